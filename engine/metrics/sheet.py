"""Contact sheets of scored videos: what `tryon eval --sheet PNG` draws for the eye to check.

Per sample, a title line with its scores, then rows of frames taken at the same moments:
the inputs (user photo and garments, where the reference is a sample folder), the motion
video, the output and the ground truth. The frames are spread evenly over the compared
frames and always include the figure's worst frame, which is framed in red.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SHEET_FRAMES = 8  # frames per row
MAX_SAMPLES = 8  # samples per sheet: a folder of many would make a picture no one reads
_GAP, _LABEL_WIDTH, _TITLE_HEIGHT = 4, 56, 14
_BACKGROUND, _INK, _WORST = (255, 255, 255), (0, 0, 0), (220, 30, 30)


@dataclass
class SheetPanel:
    """One sample's part of a sheet. Videos are uint8 (T, H, W, 3); the output at the truth's size."""

    title: str
    output: np.ndarray
    truth: np.ndarray | None = None
    motion: np.ndarray | None = None
    inputs: list[np.ndarray] | None = None  # user photo, garment shots
    worst_frame: int | None = None


def picked_frames(count: int, worst: int | None, per_row: int = SHEET_FRAMES) -> list[int]:
    """`per_row` frame indices spread evenly over `count` frames, the worst one among them."""
    picked = sorted({int(round(i)) for i in np.linspace(0, count - 1, min(per_row, count))})
    if worst is not None and worst not in picked:
        picked[int(np.argmin([abs(i - worst) for i in picked]))] = worst
    return sorted(set(picked))


def contact_sheet(panels: list[SheetPanel]) -> Image.Image:
    """One picture of all panels, a block of labelled rows per sample."""
    blocks = [_panel_image(panel) for panel in panels]
    width = max(block.width for block in blocks)
    sheet = Image.new("RGB", (width, sum(block.height for block in blocks)), _BACKGROUND)
    top = 0
    for block in blocks:
        sheet.paste(block, (0, top))
        top += block.height
    return sheet


def _panel_image(panel: SheetPanel) -> Image.Image:
    height, width = panel.output.shape[1:3]
    frames = picked_frames(len(panel.output), panel.worst_frame)
    rows: list[tuple[str, list[np.ndarray], list[int]]] = []
    if panel.inputs:
        rows.append(("inputs", [_fit(image, height, width) for image in panel.inputs], []))
    if panel.motion is not None:
        rows.append(("motion", [_fit(panel.motion[min(i, len(panel.motion) - 1)], height, width) for i in frames], []))
    worst = [frames.index(panel.worst_frame)] if panel.worst_frame in frames else []
    rows.append(("output", [panel.output[i] for i in frames], worst))
    if panel.truth is not None:
        rows.append(("truth", [panel.truth[i] for i in frames], worst))
    columns = max(len(images) for _, images, _ in rows)
    block = Image.new("RGB", (_LABEL_WIDTH + columns * (width + _GAP), _TITLE_HEIGHT + len(rows) * (height + _GAP)
                              + _TITLE_HEIGHT + _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(block)
    font = ImageFont.load_default()
    draw.text((2, 1), panel.title, fill=_INK, font=font)
    top = _TITLE_HEIGHT
    for label, images, marked in rows:
        draw.text((2, top + height // 2 - 5), label, fill=_INK, font=font)
        for column, image in enumerate(images):
            left = _LABEL_WIDTH + column * (width + _GAP)
            block.paste(Image.fromarray(image), (left, top))
            if column in marked:
                draw.rectangle((left - 1, top - 1, left + width, top + height), outline=_WORST, width=2)
        top += height + _GAP
    for column, index in enumerate(frames):  # frame numbers under the last row
        draw.text((_LABEL_WIDTH + column * (width + _GAP) + 2, top), f"frame {index}",
                  fill=_WORST if index == panel.worst_frame else _INK, font=font)
    return block


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` scaled to fit `width` x `height`, centred on white (a product shot keeps its shape)."""
    picture = Image.fromarray(image)
    picture.thumbnail((width, height), Image.BILINEAR)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    canvas.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
    return np.asarray(canvas)
