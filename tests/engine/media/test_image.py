from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.media.image as image_module
from engine.errors import InputError, RuntimeFailure
from engine.media.image import load_image, save_image, to_rgb
from engine.media.video_writer import write_video

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _pixel(image: Image.Image) -> tuple[int, int, int]:
    return image.getpixel((0, 0))


def _close(actual, expected, tolerance: int = 3) -> bool:
    return all(abs(int(a) - int(e)) <= tolerance for a, e in zip(actual, expected, strict=True))


def _saved(tmp_path: Path, image: Image.Image, name: str, **options) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


# ---- modes ----


def test_rgb_png_loads_exactly(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    loaded = load_image(_saved(tmp_path, Image.fromarray(array), "rgb.png"))
    assert loaded.mode == "RGB" and loaded.size == (7, 5)
    assert np.array_equal(np.asarray(loaded), array)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0] = [(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128)]
    loaded = load_image(_saved(tmp_path, Image.fromarray(rgba, "RGBA"), "rgba.png"))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == WHITE  # fully transparent
    assert loaded.getpixel((1, 0)) == RED  # opaque
    assert _close(loaded.getpixel((2, 0)), (255, 127, 127))  # half red, half white


def test_la_transparent_pixels_become_white(tmp_path):
    image = Image.new("LA", (2, 1), (40, 255))
    image.putpixel((1, 0), (40, 0))
    loaded = load_image(_saved(tmp_path, image, "la.png"))
    assert loaded.getpixel((0, 0)) == (40, 40, 40)
    assert loaded.getpixel((1, 0)) == WHITE


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 0, 0, *BLUE, *RED] + [0] * 759)
    image.putpixel((0, 0), 1)
    image.putpixel((1, 0), 2)
    plain = load_image(_saved(tmp_path, image, "p.png"))
    assert (plain.getpixel((0, 0)), plain.getpixel((1, 0))) == (BLUE, RED)
    transparent = load_image(_saved(tmp_path, image, "pt.png", transparency=2))
    assert (transparent.getpixel((0, 0)), transparent.getpixel((1, 0))) == (BLUE, WHITE)


@pytest.mark.parametrize(("mode", "value", "expected"), [("L", 77, (77, 77, 77)), ("1", 1, WHITE)])
def test_grey_and_bilevel_become_rgb(tmp_path, mode, value, expected):
    loaded = load_image(_saved(tmp_path, Image.new(mode, (3, 3), value), f"{mode}.png"))
    assert loaded.mode == "RGB" and _pixel(loaded) == expected


def test_16_bit_png_keeps_its_brightness(tmp_path):
    levels = np.array([[0, 16384, 32768, 65535]], np.uint16)
    loaded = load_image(_saved(tmp_path, Image.fromarray(levels), "g16.png"))
    assert [loaded.getpixel((x, 0))[0] for x in range(4)] == [0, 64, 128, 255]


def test_16_bit_big_endian_tiff_keeps_its_brightness(tmp_path):
    data = np.full((2, 2), 32768, ">u2").tobytes()
    image = Image.frombytes("I;16B", (2, 2), data)
    path = _saved(tmp_path, image, "g16b.tiff")
    assert Image.open(path).mode == "I;16B"
    assert _pixel(load_image(path)) == (128, 128, 128)


def test_32_bit_integer_is_read_as_16_bit_when_in_that_range(tmp_path):
    image = Image.fromarray(np.full((2, 2), 40000, np.int32))
    path = _saved(tmp_path, image, "i32.tiff")
    assert Image.open(path).mode == "I"
    assert _pixel(load_image(path)) == (156, 156, 156)  # 40000 / 65535 * 255


def test_32_bit_integer_outside_16_bit_spans_its_own_range():
    image = Image.fromarray(np.array([[-1000, 100_000]], np.int32))
    rgb = to_rgb(image)
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == WHITE


def test_float_in_0_to_1_scales_by_255(tmp_path):
    image = Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32))
    path = _saved(tmp_path, image, "f.tiff")
    assert Image.open(path).mode == "F"
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0))[0] for x in range(3)] == [0, 64, 255]


def test_float_outside_0_to_1_spans_its_own_range():
    rgb = to_rgb(Image.fromarray(np.array([[10.0, 505.0, 1000.0]], np.float32)))
    assert [rgb.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg_colour_is_roughly_right(tmp_path):
    path = _saved(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    red, green, blue = _pixel(load_image(path))
    assert red > 200 and green < 60 and blue < 60


def test_ycbcr_becomes_rgb():
    ycbcr = Image.new("RGB", (2, 2), (200, 40, 90)).convert("YCbCr")
    rgb = to_rgb(ycbcr)
    assert rgb.mode == "RGB" and _close(_pixel(rgb), (200, 40, 90))


def test_exif_orientation_6_rotates_the_picture_upright(tmp_path):
    image = Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (20, 0, 40, 20))  # red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    loaded = load_image(_saved(tmp_path, image, "exif.png", exif=exif))
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 2)) == RED and loaded.getpixel((10, 37)) == BLUE


# ---- bad files ----


def _png_claiming_size(tmp_path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (IHDR patched, CRC fixed)."""
    path = tmp_path / f"claims-{width}x{height}.png"
    Image.new("RGB", (2, 2)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("width", "height", "shown"),
    [(9000, 9000, "9000×9000"), (10_000, 9000, "10000×9000"),
     (20_000, 20_000, "400,000,000 pixels")],
)  # fmt: skip
def test_images_over_the_pixel_limit_are_refused_from_the_header(tmp_path, width, height, shown):
    # Below, between and above PIL's own warning/error thresholds (89 M and 179 M pixels).
    path = _png_claiming_size(tmp_path, width, height)
    with pytest.raises(InputError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: image is too large ({shown}")
    assert "the limit is 80,000,000 pixels" in message


def test_the_pixel_limit_is_the_module_constant(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module, "MAX_IMAGE_PIXELS", 100)
    assert load_image(_saved(tmp_path, Image.new("RGB", (10, 10)), "ok.png")).size == (10, 10)
    with pytest.raises(InputError, match="too large"):
        load_image(_saved(tmp_path, Image.new("RGB", (11, 10)), "big.png"))


def _truncated_png(tmp_path: Path) -> Path:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _saved(tmp_path, Image.fromarray(noise), "cut.png")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _truncated_jpeg(tmp_path: Path) -> Path:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _saved(tmp_path, Image.fromarray(noise), "cut.jpg")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text_named_png(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    return path


def _video_named_png(tmp_path: Path) -> Path:
    path = tmp_path / "clip.png"
    write_video(path, np.zeros((2, 16, 16, 3), np.uint8), fps=24)
    return path


def _binary_junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.png"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.png"
    path.touch()
    return path


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "photos.png"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "missing.png", "file not found"),
        (_folder, "is a folder"),
        (_empty, "file is empty"),
        (_text_named_png, "not an image (it looks like text)"),
        (_video_named_png, "not an image (it looks like a video)"),
        (_binary_junk, "not an image (unknown format)"),
        (_truncated_png, "truncated or corrupt image"),
        (_truncated_jpeg, "truncated or corrupt image"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {problem}")
    assert "\n" not in message
    assert caught.value.path == path


# ---- saving ----


def test_save_image_writes_atomically_and_leaves_nothing_else(tmp_path):
    array = np.random.default_rng(3).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    target = tmp_path / "out.png"
    save_image(target, Image.fromarray(array))
    assert os.listdir(tmp_path) == ["out.png"]
    assert np.array_equal(np.asarray(load_image(target)), array)


def test_a_failed_save_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    save_image(target, Image.new("RGB", (3, 3), RED))

    def broken_save(self, fp, format=None, **params):
        Path(fp).write_bytes(b"half an image")
        raise OSError("simulated write failure")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        save_image(target, Image.new("RGB", (3, 3), BLUE))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["out.png"]
    assert _pixel(load_image(target)) == RED


def test_a_full_disk_while_saving_is_a_runtime_failure(tmp_path, monkeypatch):
    def full_disk(self, fp, format=None, **params):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(RuntimeFailure, match="disk full"):
        save_image(tmp_path / "out.png", Image.new("RGB", (3, 3)))
    assert os.listdir(tmp_path) == []


def test_save_image_format_follows_the_extension(tmp_path):
    save_image(tmp_path / "out.jpg", Image.new("RGB", (3, 3), RED))
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    with pytest.raises(InputError, match="unknown image format"):
        save_image(tmp_path / "out.xyz", Image.new("RGB", (3, 3)))


def test_save_image_into_a_missing_folder_names_the_folder(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(InputError) as caught:
        save_image(folder / "out.png", Image.new("RGB", (3, 3)))
    assert str(caught.value) == f"{folder}: folder does not exist"


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "dossier été 写真"
    folder.mkdir()
    target = folder / "photo 1 ü.png"
    save_image(target, Image.new("RGB", (5, 4), BLUE))
    assert _pixel(load_image(target)) == BLUE


# ---- real inputs ----


def test_real_user_photo_loads(real_case_dir):
    photo = load_image(real_case_dir / "case1" / "user.png")
    assert photo.mode == "RGB" and photo.size == (720, 1280)
    assert 20 < np.asarray(photo).mean() < 235  # a photo, not a blank
