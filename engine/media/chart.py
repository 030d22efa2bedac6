"""Charts as PNG, drawn with Pillow (no plotting library is a dependency): a grid of panels,
each either lines over a shared x axis (training curves) or labelled horizontal bars (what
`tryon eval` and `tryon bench --compare` print).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.media.image import save_image

PANEL_SIZE = (520, 300)  # pixels: width, height of one panel
PLOT_MARGIN = (70, 34, 16, 38)  # left, top, right, bottom: room for tick labels and the title
TITLE_HEIGHT = 36
BACKGROUND, INK, GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)
# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
COLOURS = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (240, 228, 66), (0, 0, 0)]


@dataclass(frozen=True)
class Series:
    """One line: its name (in the legend), its (x, y) points in x order, and which of `COLOURS`
    it is drawn in (default: its place in the panel), to keep a name's colour across panels."""

    name: str
    points: list[tuple[float, float]]
    colour: int | None = None


@dataclass(frozen=True)
class LinePanel:
    title: str
    series: list[Series]
    x_label: str = ""


@dataclass(frozen=True)
class BarPanel:
    """Horizontal bars, one per (label, value), top to bottom; `reference` draws a marked line
    at that value (1.0 for ratios)."""

    title: str
    bars: list[tuple[str, float]]
    reference: float | None = None
    unit: str = ""


@dataclass
class _Frame:
    """Where a panel's plot area sits on the canvas, and the value ranges it maps."""

    left: int
    top: int
    right: int
    bottom: int
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)
    fonts: dict = field(default_factory=dict)

    def x(self, value: float) -> float:
        low, high = self.x_range
        return self.left + (value - low) / (high - low) * (self.right - self.left)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.bottom - (value - low) / (high - low) * (self.bottom - self.top)


def draw_chart(panels: list[LinePanel | BarPanel], path: Path, title: str = "", columns: int = 2) -> Path:
    """Draw `panels` in a grid (`columns` wide) under `title` and write the PNG to `path` atomically."""
    save_image(path, render_chart(panels, title, columns))
    return Path(path)


def render_chart(panels: list[LinePanel | BarPanel], title: str = "", columns: int = 2) -> Image.Image:
    """The chart as an RGB image (see `draw_chart`)."""
    columns = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    width, height = PANEL_SIZE
    canvas = Image.new("RGB", (width * columns, TITLE_HEIGHT + height * rows), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    fonts = {"title": _font(18), "panel": _font(14), "small": _font(11)}
    draw.text((10, 8), title, fill=INK, font=fonts["title"])
    for index, panel in enumerate(panels):
        left, top = (index % columns) * width, TITLE_HEIGHT + (index // columns) * height
        frame = _Frame(left + PLOT_MARGIN[0], top + PLOT_MARGIN[1], left + width - PLOT_MARGIN[2],
                       top + height - PLOT_MARGIN[3], fonts=fonts)
        draw.text((left + 10, top + 8), panel.title, fill=INK, font=fonts["panel"])
        if isinstance(panel, LinePanel):
            _draw_lines(draw, frame, panel)
        else:
            _draw_bars(draw, frame, panel)
    return canvas


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans where the system has it (it draws ΔE), else Pillow's own font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not high > low:  # one value: centred in a range around it
        pad = abs(low) / 2 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]


def _label(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.1e}"
    return f"{value:.4g}"


def _draw_lines(draw: ImageDraw.ImageDraw, frame: _Frame, panel: LinePanel) -> None:
    points = [p for s in panel.series for p in s.points if all(math.isfinite(v) for v in p)]
    if not points:
        draw.text((frame.left, frame.top), "no data", fill=INK, font=frame.fonts["small"])
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    y_ticks = nice_ticks(min(ys), max(ys))
    frame.x_range = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, max(xs) + 1)
    frame.y_range = (y_ticks[0], y_ticks[-1])
    for tick in y_ticks:
        y = frame.y(tick)
        draw.line([(frame.left, y), (frame.right, y)], fill=GRID)
        draw.text((frame.left - 6, y), _label(tick), fill=INK, font=frame.fonts["small"], anchor="rm")
    for tick in nice_ticks(*frame.x_range):
        if frame.x_range[0] <= tick <= frame.x_range[1]:
            draw.text((frame.x(tick), frame.bottom + 4), _label(tick), fill=INK, font=frame.fonts["small"], anchor="mt")
    draw.rectangle([frame.left, frame.top, frame.right, frame.bottom], outline=INK)
    draw.text((frame.right, frame.bottom + 20), panel.x_label, fill=INK, font=frame.fonts["small"], anchor="rt")
    for index, series in enumerate(panel.series):
        colour = COLOURS[(index if series.colour is None else series.colour) % len(COLOURS)]
        line = [(frame.x(x), frame.y(y)) for x, y in series.points if math.isfinite(x) and math.isfinite(y)]
        if len(line) == 1:
            x, y = line[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        elif line:
            draw.line(line, fill=colour, width=2)
        if len(panel.series) > 1:  # a legend, top right, one name a row
            legend_y = frame.top + 4 + 14 * index
            draw.line([(frame.right - 120, legend_y + 6), (frame.right - 104, legend_y + 6)], fill=colour, width=3)
            draw.text((frame.right - 100, legend_y), series.name, fill=INK, font=frame.fonts["small"])


def _draw_bars(draw: ImageDraw.ImageDraw, frame: _Frame, panel: BarPanel) -> None:
    bars = [(label, value) for label, value in panel.bars if math.isfinite(value)]
    if not bars:
        draw.text((frame.left, frame.top), "no data", fill=INK, font=frame.fonts["small"])
        return
    values = [value for _, value in bars] + ([panel.reference] if panel.reference is not None else [])
    ticks = nice_ticks(min(0.0, min(values)), max(0.0, max(values)))
    frame.left += 60  # room for the bar labels on the left, and the values on the right
    frame.right -= 50
    frame.x_range = (ticks[0], ticks[-1])
    for tick in ticks:
        x = frame.x(tick)
        draw.line([(x, frame.top), (x, frame.bottom)], fill=GRID)
        draw.text((x, frame.bottom + 4), _label(tick), fill=INK, font=frame.fonts["small"], anchor="mt")
    slot = (frame.bottom - frame.top) / len(bars)
    thickness = max(2.0, min(28.0, slot * 0.7))
    for index, (label, value) in enumerate(bars):
        middle = frame.top + slot * (index + 0.5)
        start, end = sorted((frame.x(0.0), frame.x(value)))
        draw.rectangle([start, middle - thickness / 2, end, middle + thickness / 2], fill=COLOURS[0])
        if slot >= 11:  # else the labels would overlap: the bars alone still show the spread
            draw.text((frame.left - 6, middle), label[:22], fill=INK, font=frame.fonts["small"], anchor="rm")
        if slot >= 11:
            draw.text((end + 4, middle), _label(value) + panel.unit, fill=INK, font=frame.fonts["small"], anchor="lm")
    if panel.reference is not None:
        x = frame.x(panel.reference)
        draw.line([(x, frame.top), (x, frame.bottom)], fill=COLOURS[5], width=2)
    draw.line([(frame.x(0.0), frame.top), (frame.x(0.0), frame.bottom)], fill=INK)
