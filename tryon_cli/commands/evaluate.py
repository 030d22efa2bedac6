"""`tryon eval`: score generated videos against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tryon_cli.console import notice, print_json, stdout

COLUMNS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "garment_color_error": "garment ΔE", "garment_mae": "garment MAE", "smoothness": "smooth", "motion_magnitude": "motion"}


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def evaluate(
    prediction: Annotated[Path, typer.Argument(help="A generated .mp4, or a folder of <name>.mp4.")],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Ground truth: .mp4, sample folder, or a folder of them.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """PSNR, SSIM, garment colour error, smoothness and motion magnitude, per sample and mean.

    Example: tryon eval results/ --reference data/
    """
    from tryon import api

    report = api.evaluate(prediction, reference)
    if json_output:
        print_json(report.to_dict())
        return
    for message in report.notices:
        notice(message)
    table = Table("sample", *COLUMNS.values())
    for sample in report.samples:
        table.add_row(sample.name, *(_cell(getattr(sample, c)) for c in COLUMNS))
    table.add_row("mean", *(_cell(report.mean.get(c)) for c in COLUMNS), style="bold")
    stdout.print(table)
