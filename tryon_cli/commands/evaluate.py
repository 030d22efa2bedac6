"""`tryon eval`: score generated videos against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from engine.errors import InputError
from tryon_cli import options
from tryon_cli.console import notice, print_json, stdout

COLUMNS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "garment_color_error": "garment ΔE", "garment_mae": "garment MAE", "smoothness": "smooth", "motion_magnitude": "motion",
           "figure_iou": "figure IoU", "figure_iou_worst": "worst IoU", "figure_height_ratio": "height",
           "garment_ssim": "garment SSIM"}


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def evaluate(
    prediction: Annotated[Path, typer.Argument(help="A generated .mp4 or a folder of <name>.mp4; with --bench, "
                                                    "the benchmark's folder.")],
    reference: Annotated[Optional[Path], typer.Option("--reference", "-r", help="Ground truth: .mp4, sample folder, "
                                                                               "or a folder of them.")] = None,
    bench: Annotated[Optional[str], typer.Option("--bench", help="A benchmark layout: hgc (HGC-Bench).")] = None,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", "-p", help="With --bench: the folder of "
                           "output_<i>.mp4 to score (and to render into with --model).")] = None,
    model: Annotated[Optional[str], typer.Option(help="With --bench: render the missing predictions with this "
                                                      "model first (resumable, as tryon batch).")] = None,
    size: Annotated[Optional[str], typer.Option(help="With --model: WIDTHxHEIGHT of the renders.")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="With --model: seconds per render.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="With --model: frames per second.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="With --model: denoising steps.")] = None,
    seed: Annotated[int, typer.Option(help="With --model: the seed of every render.")] = 42,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]: for rendering and the metric models.")] = "auto",
    vlm: Annotated[Optional[Path], typer.Option(help="With --bench: a Qwen2.5-VL-class model folder, the judge "
                                                     "of HGC, LGC and NTP.")] = None,
    identity_model: Annotated[Optional[Path], typer.Option(help="With --bench: an image-embedding model folder "
                                                                "for Cur.")] = None,
    text_model: Annotated[Optional[Path], typer.Option(help="With --bench: a CLIP-style model folder for GME.")] = None,
    quality_model: Annotated[Optional[Path], typer.Option(help="With --bench: the aesthetic model folder "
                                                               "(clip/, head.safetensors) for VQ.")] = None,
    sheet: Annotated[Optional[Path], typer.Option(help="Also write a contact sheet (.png): the inputs, output frames "
                                                       "and ground truth of each sample, its worst frame framed.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    chart: options.Chart = None,
) -> None:
    """PSNR, SSIM, garment colour error, smoothness and motion magnitude, per sample and mean; against
    synthetic samples also the figure's silhouette IoU (mean and worst frame), its height ratio
    (worst frame) and the garment pattern's SSIM;
    or, with --bench hgc, HGC-Bench's metrics (Cur, GME, Amp, Smoo, VQ, HGC, LGC, NTP).

    Example: tryon eval results/ --reference data/ --chart scores.png
    Sheet:   tryon eval out.mp4 --reference examples/sample_00002 --sheet sheet.png
    Bench:   tryon eval --bench hgc ./HGC-Bench --model ./teacher --predictions ./hgc-out --vlm ./qwen2.5-vl
    """
    from engine import api
    from engine.api.charts import check_chart_path, eval_chart

    check_chart_path(chart)
    if bench is not None:
        if sheet is not None:
            raise InputError("--sheet is for scoring against --reference, not with --bench")
        if chart is not None:
            raise InputError("--chart draws the per-sample scores: not with --bench")
        _evaluate_bench(bench, prediction, predictions, model, size, seconds, fps, steps, seed, device,
                        api_models(vlm, identity_model, text_model, quality_model, device), json_output)
        return
    if reference is None:
        raise InputError("--reference is required (or --bench hgc to score a benchmark)")
    report = api.evaluate(prediction, reference, sheet)
    if chart is not None:
        eval_chart(report, chart, COLUMNS)
    if json_output:
        print_json(report.to_dict())
        return
    for message in report.notices:
        notice(message)
    names = [sample.name for sample in report.samples]
    shown = [c for c in COLUMNS if report.mean.get(c) is not None]  # no column of dashes only (LPIPS off, a plain video)
    table = Table(Column("sample", no_wrap=True, min_width=max(map(len, names), default=6)),
                  *(COLUMNS[c] for c in shown))
    for sample in report.samples:
        table.add_row(sample.name, *(_cell(getattr(sample, c)) for c in shown))
    table.add_row("mean", *(_cell(report.mean.get(c)) for c in shown), style="bold")
    stdout.print(table)


def api_models(vlm, identity, text, quality, device: str):
    from engine.api.data import BenchModels

    return BenchModels(vlm=vlm, identity=identity, text=text, quality=quality,
                       device="cpu" if device == "auto" else device)


def _evaluate_bench(bench, folder: Path, predictions: Path | None, model, size, seconds, fps, steps, seed, device,
                    models, json_output: bool) -> None:
    from engine import api
    from engine.api import batch as api_batch
    from engine.modes import RunOptions
    from engine.media import parse_size
    from engine.metrics.hgc import METRICS
    from tryon_cli.commands.batch import BatchDisplay

    if bench != "hgc":
        raise InputError(f"--bench must be hgc, not '{bench}'")
    if predictions is None:
        if model is None:
            raise InputError("--predictions is required: the folder of output_<i>.mp4 to score (or --model to render)")
        predictions = Path("hgc-predictions")
    render = None
    if model is not None:
        render = api_batch.job_defaults(size=parse_size(size) if size else None, seconds=seconds, fps=fps, seed=seed,
                                        steps=steps, run=RunOptions(model=model, device=device))
    with BatchDisplay(enabled=render is not None) as display:  # on stderr: --json owns stdout alone
        report, summary = api.evaluate_hgc(folder, predictions, models, render=render, listener=display)
    if summary is not None and summary.interrupted:
        raise KeyboardInterrupt
    if json_output:
        data = report.to_dict()
        if summary is not None:
            data["render"] = {"ok": summary.count("ok"), "skipped": summary.count("skipped"),
                              "failed": summary.count("failed"), "report": str(summary.report)}
        print_json(data)
        return
    table = Table(title=f"HGC-Bench: {report.scored} of {report.samples} samples scored ({predictions})")
    for key in METRICS:
        table.add_column(f"{key} ↑", justify="right")
    table.add_row(*(_cell(report.means.get(key)) for key in METRICS))
    stdout.print(table)
    for key in METRICS:
        if key in report.skipped:
            stdout.print(f"{key}: skipped: {report.skipped[key]}")
        else:
            stdout.print(f"{key}: {report.models.get(key)}")
    if report.missing:
        notice(f"{len(report.missing)} predictions missing (first: {report.missing[0]})")
