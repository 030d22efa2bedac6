from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from engine.errors import InputError
from engine.media.geometry import (
    MAX_SIDE,
    MIN_SIDE,
    SizeDecision,
    choose_output_size,
    covering_multiple,
    crop_center,
    fit_frames,
    fit_image,
    pad_edges,
    parse_size,
    round_to_multiple,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---- parse_size ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1152x720", (1152, 720)), ("720×1280", (720, 1280)), (" 64 X 32 ", (64, 32)),
     ("16x16", (16, 16))],
)  # fmt: skip
def test_parse_size_reads_width_first(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1152", "x720", "1152x", "-5x10", "10x-5", "0x720", "720x0", "1.5x2", "8193x100",
     "100x8193", "abc", "10x10x10", "١٠x10", "2x2", "15x720", "720x15"],
)  # fmt: skip
def test_parse_size_rejects_bad_text_with_one_line_naming_it(text):
    with pytest.raises(InputError) as caught:
        parse_size(text)
    message = str(caught.value)
    assert f"'{text}'" in message
    assert "\n" not in message


@given(
    st.integers(MIN_SIDE, MAX_SIDE),
    st.integers(MIN_SIDE, MAX_SIDE),
    st.sampled_from(["x", "X", "×"]),
)
def test_parse_size_round_trips_every_valid_size(width, height, separator):
    assert parse_size(f"{width}{separator}{height}") == (width, height)


@given(st.text(max_size=20))
def test_parse_size_either_parses_or_raises_input_error(text):
    try:
        width, height = parse_size(text)
    except InputError:
        return
    assert MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE


# ---- round_to_multiple ----


@pytest.mark.parametrize(
    ("value", "multiple", "expected"),
    [(720, 32, 704), (730, 32, 736), (1152, 32, 1152), (48, 32, 32), (49, 32, 64),
     (16, 32, 32), (1, 32, 32), (0, 32, 32), (7, 1, 7), (5, 2, 4)],
)  # fmt: skip
def test_round_to_multiple_examples(value, multiple, expected):
    assert round_to_multiple(value, multiple) == expected


@given(st.integers(0, 20_000), st.integers(1, 128))
def test_round_to_multiple_is_the_nearest_multiple(value, multiple):
    result = round_to_multiple(value, multiple)
    assert result % multiple == 0
    assert result >= multiple
    if 2 * value >= multiple:
        assert abs(result - value) <= multiple / 2
    if 2 * (value % multiple) == multiple and value > multiple:
        assert result == value - multiple // 2  # exact halves go down


def test_round_to_multiple_rejects_a_zero_multiple():
    with pytest.raises(ValueError):
        round_to_multiple(100, 0)


# ---- choose_output_size ----


def test_default_size_is_delivered_exactly_and_generated_at_the_covering_multiple():
    decision = choose_output_size((1920, 1080), None)
    assert decision == SizeDecision(1152, 720, 1152, 736)  # Dress&Dance's size, not 1152x704
    assert decision.size == (1152, 720) and decision.generate_size == (1152, 736)


def test_default_size_follows_a_portrait_photo():
    decision = choose_output_size((720, 1280), None)
    assert decision.size == (720, 1152) and decision.generate_size == (736, 1152)


def test_default_size_for_a_square_photo_is_landscape():
    assert choose_output_size((500, 500), None).size == (1152, 720)


def test_requested_size_is_used_as_given_whatever_the_photo():
    assert choose_output_size((1920, 1080), (704, 1280)) == SizeDecision(704, 1280, 704, 1280)
    assert choose_output_size((720, 1280), (1280, 704)) == SizeDecision(1280, 704, 1280, 704)


@pytest.mark.parametrize(("requested", "generated"), [((100, 10), (128, 32)), ((66, 64), (96, 64)), ((2, 2), (32, 32))])
def test_requested_size_is_generated_at_the_smallest_covering_multiple(requested, generated):
    decision = choose_output_size((720, 1280), requested)
    assert decision.size == requested and decision.generate_size == generated


def test_an_odd_requested_side_is_an_input_error():
    with pytest.raises(InputError, match="101x70.*even"):
        choose_output_size((720, 1280), (101, 70))


def test_custom_default_and_multiple():
    decision = choose_output_size((600, 800), None, default=(1280, 704), multiple=16)
    assert decision == SizeDecision(704, 1280, 704, 1280)


@pytest.mark.parametrize(("value", "multiple", "expected"), [(720, 32, 736), (704, 32, 704), (1, 32, 32), (33, 16, 48)])
def test_covering_multiple_rounds_up(value, multiple, expected):
    assert covering_multiple(value, multiple) == expected


@pytest.mark.parametrize(("size", "padded"), [((5, 3), (8, 8)), ((4, 4), (4, 4)), ((6, 2), (7, 5))])
def test_crop_center_takes_back_exactly_what_pad_edges_added(size, padded):
    frames = np.random.default_rng(0).integers(0, 256, (2, size[1], size[0], 3), dtype=np.uint8)
    grown = pad_edges(frames, padded)
    assert grown.shape == (2, padded[1], padded[0], 3)
    np.testing.assert_array_equal(crop_center(grown, size), frames)
    np.testing.assert_array_equal(grown[:, 0, 0], frames[:, 0, 0])  # the corners repeat the edge pixels
    np.testing.assert_array_equal(grown[:, -1, -1], frames[:, -1, -1])


def test_crop_center_drops_equal_margins():
    frames = np.arange(6 * 8).reshape(1, 6, 8, 1)
    np.testing.assert_array_equal(crop_center(frames, (4, 2))[0, :, :, 0], [[18, 19, 20, 21], [26, 27, 28, 29]])
    with pytest.raises(ValueError):
        crop_center(frames, (10, 2))


# ---- fit_image / fit_frames ----


def _stripes(size: tuple[int, int], colours, vertical: bool) -> Image.Image:
    """Equal stripes of `colours`, side by side (vertical=True) or stacked."""
    width, height = size
    image = Image.new("RGB", size)
    count = len(colours)
    for index, colour in enumerate(colours):
        if vertical:
            box = (index * width // count, 0, (index + 1) * width // count, height)
        else:
            box = (0, index * height // count, width, (index + 1) * height // count)
        image.paste(colour, box)
    return image


def test_cover_crops_the_sides_of_a_wide_image():
    image = _stripes((300, 100), [RED, GREEN, BLUE], vertical=True)
    fitted = fit_image(image, (50, 50), "cover")
    assert fitted.size == (50, 50)
    pixels = np.asarray(fitted).reshape(-1, 3)
    # LANCZOS lets a trace of the cropped stripes show in the edge pixels, no more.
    assert np.all(np.abs(pixels.astype(int) - GREEN) <= 20)


def test_cover_crops_top_and_bottom_of_a_tall_image():
    image = _stripes((100, 300), [RED, GREEN, BLUE], vertical=False)
    fitted = np.asarray(fit_image(image, (80, 40), "cover"))
    assert fitted.shape == (40, 80, 3)
    assert np.all(np.abs(fitted.astype(int) - GREEN) <= 20)


def test_contain_keeps_everything_and_pads_with_the_background():
    image = _stripes((300, 100), [RED, GREEN, BLUE], vertical=True)
    fitted = np.asarray(fit_image(image, (60, 60), "contain"))
    assert fitted.shape == (60, 60, 3)
    assert tuple(fitted[0, 30]) == WHITE and tuple(fitted[-1, 30]) == WHITE  # padding
    assert tuple(fitted[30, 2]) == RED and tuple(fitted[30, -3]) == BLUE  # both ends kept
    black = np.asarray(fit_image(image, (60, 60), "contain", background=(0, 0, 0)))
    assert tuple(black[0, 30]) == (0, 0, 0)


def test_fit_image_converts_to_rgb_and_rejects_unknown_modes():
    fitted = fit_image(Image.new("L", (10, 20), 77), (4, 4), "cover")
    assert fitted.mode == "RGB" and fitted.getpixel((2, 2)) == (77, 77, 77)
    with pytest.raises(ValueError):
        fit_image(Image.new("RGB", (10, 10)), (4, 4), "stretch")


def test_fit_frames_fits_every_frame_and_keeps_their_order():
    frames = np.stack([np.full((30, 90, 3), level, np.uint8) for level in (0, 100, 200)])
    frames[:, :, :30] = 255  # a white left third, cropped away by "cover"
    fitted = fit_frames(frames, (16, 24))
    assert fitted.shape == (3, 24, 16, 3) and fitted.dtype == np.uint8
    assert [int(frame.mean().round()) for frame in fitted] == [0, 100, 200]


def test_fit_frames_returns_frames_of_the_right_size_unchanged():
    frames = np.zeros((2, 24, 16, 3), np.uint8)
    assert fit_frames(frames, (16, 24)) is frames


@pytest.mark.parametrize(
    "frames",
    [np.zeros((24, 16, 3), np.uint8), np.zeros((1, 24, 16, 4), np.uint8), np.zeros((1, 24, 16, 3))],
)
def test_fit_frames_rejects_what_is_not_uint8_rgb_frames(frames):
    with pytest.raises(ValueError):
        fit_frames(frames, (8, 8))
