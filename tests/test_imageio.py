"""Image input rules (modes, bit depth, EXIF, limits, damaged files) and atomic output."""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from gencodec import imageio
from gencodec.errors import GencodecError, InputError, OutputExistsError
from gencodec.imageio import (as_rgb_uint8, atomic_output, load_image, save_image,
                              write_bytes_atomic)


def _save(tmp_path, name, im: Image.Image, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


# -- modes ------------------------------------------------------------------------------

def test_rgb_png_is_lossless(tmp_path, tiny_image):
    p = _save(tmp_path, "a.png", Image.fromarray(tiny_image))
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, tiny_image)


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 0)      # transparent -> white
    a[0, 1] = (10, 20, 30, 255)    # opaque -> itself
    a[0, 2] = (0, 0, 0, 128)       # half black over white -> 127
    a[1, :] = (200, 100, 0, 51)    # 20 %: 0.2 * c + 0.8 * 255
    out = load_image(_save(tmp_path, "rgba.png", Image.fromarray(a, "RGBA")))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 2], [127, 127, 127])
    np.testing.assert_array_equal(out[1, 0], np.round(0.2 * np.array([200, 100, 0]) + 204))


def test_la_is_composited_on_white(tmp_path):
    la = Image.merge("LA", [Image.new("L", (4, 2), 40), Image.new("L", (4, 2), 0)])
    la.putpixel((1, 0), (40, 255))
    out = load_image(_save(tmp_path, "la.png", la))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [40, 40, 40])


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    p.putpixel((2, 2), 1)
    out = load_image(_save(tmp_path, "p.png", p, transparency=0))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # index 0 is transparent
    np.testing.assert_array_equal(out[2, 2], [0, 0, 255])
    # and without transparency the palette colour itself
    out = load_image(_save(tmp_path, "p2.png", p))
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_grayscale_becomes_rgb(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = load_image(_save(tmp_path, "g.png", Image.fromarray(g, "L")))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_bilevel_and_cmyk_become_rgb(tmp_path):
    b = Image.new("1", (5, 3), 1)
    out = load_image(_save(tmp_path, "b.png", b))
    assert out.shape == (3, 5, 3) and (out == 255).all()
    c = Image.new("CMYK", (5, 3), (0, 255, 255, 0))  # red
    out = load_image(_save(tmp_path, "c.jpg", c, quality=95))
    assert out.shape == (3, 5, 3)
    assert out[1, 2, 0] > 200 and out[1, 2, 1] < 60 and out[1, 2, 2] < 60


def test_16bit_grayscale_png_is_scaled_and_rounded(tmp_path):
    v = np.array([[0, 65535, 32896, 257], [128, 200, 65000, 1000]], np.uint16)
    im = Image.fromarray(v)
    assert im.mode == "I;16"
    p = _save(tmp_path, "g16.png", im)
    with Image.open(p) as check:
        assert check.mode.startswith("I")  # really stored as 16-bit
    out = load_image(p)
    expect = np.round(v / 65535.0 * 255.0).astype(np.uint8)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[:, :, 0], expect)
    np.testing.assert_array_equal(out[0, :, 0], [0, 255, 128, 1])
    # a dark 16-bit image stays dark (not read as 8-bit values)
    dark = np.full((4, 4), 200, np.uint16)
    assert load_image(_save(tmp_path, "dark.png", Image.fromarray(dark))).max() <= 1


def test_float_tiff_is_scaled(tmp_path):
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    out = load_image(_save(tmp_path, "f.tif", Image.fromarray(f, "F")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])


def test_exif_orientation_is_applied(tmp_path):
    # stored 40 wide x 20 high, red block on the left half; orientation 6 means
    # "rotate 90 degrees clockwise to display": shown 20 wide x 40 high, red on top
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = _save(tmp_path, "o6.jpg", Image.fromarray(a), exif=exif.tobytes(), quality=95)
    with Image.open(p) as check:
        assert check.size == (40, 20) and check.getexif().get(0x0112) == 6
    out = load_image(p)
    assert out.shape == (40, 20, 3)
    top, bottom = out[4:16].reshape(-1, 3).mean(0), out[24:36].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_broken_exif_is_ignored(tmp_path, monkeypatch):
    p = _save(tmp_path, "x.png", Image.new("RGB", (6, 4), (1, 2, 3)))

    def boom(im, *a, **k):
        raise SyntaxError("bad EXIF")

    monkeypatch.setattr(imageio.ImageOps, "exif_transpose", boom)
    out = load_image(p)
    assert out.shape == (4, 6, 3) and (out == [1, 2, 3]).all()


# -- damaged and unsuitable files -------------------------------------------------------

def _encoded(fmt: str, **kw) -> bytes:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_truncated_files_raise_input_error(tmp_path, fmt):
    data = _encoded(fmt)
    p = tmp_path / f"t.{fmt.lower()}"
    cuts = sorted({1, 8, 16, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 20,
                   len(data) - 13 if fmt == "PNG" else len(data) - 2})
    for n in cuts:
        p.write_bytes(data[:n])
        with pytest.raises(InputError, match=str(p.name)):
            load_image(p)


def test_truncations_of_png_and_jpeg_are_caught(tmp_path):
    for fmt in ("PNG", "JPEG"):
        data = _encoded(fmt)
        p = tmp_path / f"t.{fmt.lower()}"
        # a PNG cut inside its final IEND chunk still holds every pixel; Pillow's
        # verify() stops at the IEND type, so the last 4 (its CRC) are let through.
        # Every cut in the last 64 bytes (where Pillow alone decodes silently: the zlib
        # checksum and IEND are missing), a sample before.
        last = len(data) - 4 if fmt == "PNG" else len(data)
        for n in sorted(set(range(1, last, 37)) | set(range(len(data) - 64, last))):
            p.write_bytes(data[:n])
            with pytest.raises(InputError):
                load_image(p)


def test_corrupt_png_crc_is_caught(tmp_path):
    data = bytearray(_encoded("PNG"))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: the chunk CRC no longer matches
    p = tmp_path / "c.png"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="c.png"):
        load_image(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_image(p)


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n" * 20)
    with pytest.raises(InputError, match="not a recognised image"):
        load_image(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_pixel_limit(tmp_path, monkeypatch):
    p = _save(tmp_path, "big.png", Image.new("RGB", (20, 10)))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 199)
    with pytest.raises(InputError, match="200 pixels, above the limit of 199"):
        load_image(p)
    with pytest.raises(InputError, match="limit"):
        as_rgb_uint8(np.zeros((10, 20, 3), np.uint8))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 200)
    assert load_image(p).shape == (10, 20, 3)


def test_default_pixel_limit_is_documented():
    assert imageio.MAX_PIXELS == int(os.environ.get("GENCODEC_MAX_PIXELS", 1 << 28))
    assert "MAX_PIXELS" in imageio.__doc__ and "white" in imageio.__doc__


def test_input_error_is_a_value_error_and_gencodec_error():
    assert issubclass(InputError, ValueError) and issubclass(InputError, GencodecError)


# -- arrays -----------------------------------------------------------------------------

def test_as_rgb_uint8_conversions():
    g = np.array([[0, 255]], np.uint8)
    assert as_rgb_uint8(g).shape == (1, 2, 3)
    assert as_rgb_uint8(g[:, :, None]).shape == (1, 2, 3)
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0.0, 0.5, 1.0, 2.0]]))[0, :, 0],
                                  [0, 128, 255, 255])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[0, 65535, 257]], np.uint16))[0, :, 1],
                                  [0, 255, 1])
    rgba = np.array([[[0, 0, 0, 0], [9, 9, 9, 255]]], np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(rgba), [[[255, 255, 255], [9, 9, 9]]])
    # a non-contiguous view comes back contiguous and equal
    a = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)[:, ::2]
    out = as_rgb_uint8(a)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 3), np.int64), "dtype"),
    (np.zeros((4, 4, 3), bool), "dtype"),
    (np.full((4, 4, 3), np.nan), "NaN"),
])
def test_as_rgb_uint8_rejects(bad, match):
    with pytest.raises(InputError, match=match):
        as_rgb_uint8(bad)


# -- atomic output ----------------------------------------------------------------------

def test_atomic_output_success_and_permissions(tmp_path):
    dest = tmp_path / "out.bin"
    with atomic_output(dest) as tmp:
        assert tmp.parent == tmp_path and tmp != dest and tmp.suffix == ".bin"
        tmp.write_bytes(b"data")
        assert not dest.exists()  # nothing at the destination until done
    assert dest.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask


def test_atomic_output_leaves_nothing_on_exception(tmp_path):
    dest = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("encoder died")
    assert os.listdir(tmp_path) == []


def test_atomic_output_keeps_the_old_file_on_exception(tmp_path):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(dest, force=True) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.png"]


def test_atomic_output_refuses_to_overwrite(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        with atomic_output(dest):
            pytest.fail("must not get here")
    with pytest.raises(OutputExistsError):
        write_bytes_atomic(dest, b"new")
    assert dest.read_bytes() == b"keep me"
    write_bytes_atomic(dest, b"new", force=True)
    assert dest.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_output_does_not_clobber_a_file_that_appears_meanwhile(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(OutputExistsError):
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"mine")
            dest.write_bytes(b"someone else's")
    assert dest.read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_output_bad_destinations(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_bytes_atomic(tmp_path / "no" / "such" / "dir.bin", b"x")
    with pytest.raises(InputError, match="directory"):
        write_bytes_atomic(tmp_path, b"x", force=True)
    assert os.listdir(tmp_path) == []


def test_save_image_round_trip_and_errors(tmp_path, tiny_image):
    save_image(tmp_path / "a.png", tiny_image)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), tiny_image)
    save_image(tmp_path / "a.webp", tiny_image)  # format from the extension
    with Image.open(tmp_path / "a.webp") as im:
        assert im.format == "WEBP"
    with pytest.raises(OutputExistsError):
        save_image(tmp_path / "a.png", tiny_image)
    with pytest.raises(InputError, match="cannot write"):
        save_image(tmp_path / "a.unknownext", tiny_image)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "a.webp"]
