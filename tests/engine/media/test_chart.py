"""Charts drawn with Pillow: lines go where their values say, bars are as long as their values."""

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.media.chart import COLOURS, BarPanel, LinePanel, Series, draw_chart, nice_ticks, render_chart


def pixels_of(image: Image.Image, colour: tuple[int, int, int]) -> np.ndarray:
    """(row, column) of every pixel drawn in exactly `colour`."""
    return np.argwhere((np.asarray(image) == colour).all(axis=2))


def test_a_rising_series_is_drawn_rising_in_its_colour_and_another_in_the_next():
    image = render_chart([LinePanel("loss", [Series("up", [(0, 0.0), (5, 1.0), (10, 2.0)]),
                                             Series("down", [(0, 2.0), (10, 0.0)])])])
    up, down = pixels_of(image, COLOURS[0]), pixels_of(image, COLOURS[1])
    assert len(up) > 100 and len(down) > 100
    up = up[up[:, 1] < up[:, 1].max() - 130]  # leave out the legend's swatch, top right
    left, right = up[up[:, 1] == up[:, 1].min()], up[up[:, 1] == up[:, 1].max()]
    assert left[:, 0].mean() > right[:, 0].mean() + 100  # rows grow downwards: rising means up on the right


def test_a_series_keeps_the_colour_it_is_given():
    image = render_chart([LinePanel("lr", [Series("dmd", [(0, 1.0), (10, 2.0)], colour=3)])])
    assert len(pixels_of(image, COLOURS[3])) > 100 and len(pixels_of(image, COLOURS[0])) == 0


def test_bars_are_as_long_as_their_values_and_a_negative_one_goes_left():
    image = render_chart([BarPanel("fps", [("a", 1.0), ("b", 2.0), ("c", 4.0), ("d", -2.0)], reference=1.0)])
    bar = pixels_of(image, COLOURS[0])
    rows = {}
    for row, column in bar:
        rows.setdefault(row, []).append(column)
    spans = sorted({(min(c), max(c)) for c in rows.values()}, key=lambda s: s[0])  # one span per bar
    lengths = {span: span[1] - span[0] for span in spans}
    positive = sorted(length for (start, _), length in lengths.items() if start == max(s[0] for s in spans))
    assert len(positive) == 3
    longest = positive[2]  # a pixel of rounding at each end: compare with the longest
    assert positive[0] == pytest.approx(longest / 4, abs=3) and positive[1] == pytest.approx(longest / 2, abs=3)
    negative = [span for span in spans if span[0] < max(s[0] for s in spans)]
    assert negative and negative[0][1] - negative[0][0] == pytest.approx(longest / 2, abs=3)
    assert len(pixels_of(image, COLOURS[5])) > 50  # the reference line


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (0.27, 0.34), (-3.0, 17.0), (1e-5, 1e-4), (5.0, 5.0)])
def test_ticks_are_round_and_cover_the_range(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 8
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6


def test_draw_chart_writes_a_png_and_refuses_another_suffix(tmp_path):
    path = draw_chart([LinePanel("a", [Series("a", [(0, 1.0)])]), BarPanel("b", [("x", 1.0)])], tmp_path / "c.png",
                      title="two panels")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1040, 336)
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]
    with pytest.raises(InputError, match="unknown image format"):
        draw_chart([BarPanel("b", [("x", 1.0)])], tmp_path / "c.chart")
