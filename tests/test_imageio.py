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
    assert imageio.MAX_PIXELS == imageio.max_pixels_from_environment()
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


# -- adversarial inputs and outputs (farm review) -----------------------------------------

@pytest.mark.parametrize("fmt, ext", [("GIF", "gif"), ("WEBP", "webp"), ("PNG", "png")])
def test_animations_are_refused_not_cut_to_one_frame(tmp_path, fmt, ext):
    frames = [Image.new("RGB", (12, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / f"anim.{ext}"
    frames[0].save(p, format=fmt, save_all=True, append_images=frames[1:])
    with Image.open(p) as check:
        assert check.is_animated and check.n_frames == 3
    with pytest.raises(InputError, match=f"anim.{ext}: animated {fmt} \\(3 frames\\)"):
        load_image(p)
    # one frame saved the same way is a still image
    still = tmp_path / f"still.{ext}"
    frames[0].save(still, format=fmt, save_all=True)
    assert load_image(still).shape == (8, 12, 3)


def test_fifo_and_device_inputs_are_named_for_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for bad in (fifo, "/dev/null"):
        with pytest.raises(InputError, match="not a regular file"):
            load_image(bad)  # must neither hang nor say "empty file"
        with pytest.raises(InputError, match="not a regular file"):
            imageio.check_input(bad)
    with pytest.raises(InputError, match="is a directory"):
        imageio.check_input(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        imageio.check_input(tmp_path / "missing.gnc")


def test_unreadable_input_says_permission_denied(tmp_path, monkeypatch, tiny_image):
    p = tmp_path / "secret.png"
    Image.fromarray(tiny_image).save(p)
    # root reads any file, so deny through access() (what check_input asks) ...
    real_access = os.access
    monkeypatch.setattr(imageio.os, "access",
                        lambda path, mode, **kw: False if str(path) == str(p)
                        else real_access(path, mode, **kw))
    with pytest.raises(InputError, match="secret.png: cannot read: permission denied"):
        load_image(p)
    monkeypatch.undo()

    # ... and through open() (a file that became unreadable in between)
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(imageio.Image, "open", denied)
    with pytest.raises(InputError, match="secret.png: cannot read: permission denied"):
        load_image(p)


def test_output_is_never_an_input_even_with_force(tmp_path, tiny_image):
    src = tmp_path / "in.png"
    Image.fromarray(tiny_image).save(src)
    before = src.read_bytes()
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    for dest in (src, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "." / "in.png"):
        for force in (False, True):
            with pytest.raises(InputError, match="is also the input"):
                imageio.check_output(dest, force, inputs=[src])
    assert src.read_bytes() == before
    imageio.check_output(tmp_path / "new.png", inputs=[src, tmp_path / "missing.png"])


def test_device_and_fifo_outputs_are_written_into_not_replaced(tmp_path):
    import threading

    devnull_before = os.stat("/dev/null")
    write_bytes_atomic("/dev/null", b"x" * 1000)  # no --force needed: nothing is replaced
    write_bytes_atomic("/dev/null", b"x", force=True)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == devnull_before.st_rdev
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_bytes_atomic(fifo, b"stream bytes")
    reader.join(timeout=10)
    assert got == [b"stream bytes"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["out.fifo"]


def test_symlinked_output_is_written_through(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "out.bin"
    target.write_bytes(b"old")
    link = tmp_path / "out.bin"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError):
        write_bytes_atomic(link, b"new")
    write_bytes_atomic(link, b"new", force=True)
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert os.listdir(real_dir) == ["out.bin"]


def test_unwritable_output_folder_fails_early_and_names_the_output(tmp_path, monkeypatch):
    dest = tmp_path / "out.gnc"
    real_access = os.access
    monkeypatch.setattr(imageio.os, "access",
                        lambda path, mode, **kw: False if str(path) == str(tmp_path)
                        else real_access(path, mode, **kw))
    with pytest.raises(InputError, match="out.gnc: cannot write in folder"):
        imageio.check_output(dest)
    monkeypatch.undo()

    # a folder that refuses the temporary file (read-only mount, full inode table...):
    # the error names the output, not the hidden temporary name
    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(imageio.tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match=r"out.gnc: cannot create a file in .*Read-only"):
        write_bytes_atomic(dest, b"data")
    assert os.listdir(tmp_path) == []


def _matrix_profile(name: str, colorants, gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile (D50 colorants, one gamma)."""
    import struct

    def s15(v):
        return struct.pack(">i", int(round(v * 65536)))

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    text = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, int(round(gamma * 256))) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(*colorants[0])),
            (b"gXYZ", xyz(*colorants[1])), (b"bXYZ", xyz(*colorants[2])), (b"rTRC", curv),
            (b"gTRC", curv), (b"bTRC", curv), (b"cprt", b"text" + bytes(4) + b"none" + bytes(4))]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", 128 + len(table) + len(body)) + bytes(4) + bytes([2, 0x10, 0, 0])
              + b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28)
              + s15(0.9642) + s15(1.0) + s15(0.8249))
    return header + bytes(128 - len(header)) + table + body


#: Adobe RGB (1998) primaries, adapted to D50: a wider gamut than sRGB.
ADOBE_RGB_D50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))


def test_wide_gamut_icc_profile_is_converted_to_srgb(tmp_path):
    """A photo tagged Adobe RGB (or Display P3) used to be read as if it were sRGB:
    washed-out colours in every output. Now it is converted as a browser would."""
    from PIL import ImageCms

    wide = _matrix_profile("Adobe-like RGB (test)", ADOBE_RGB_D50)
    a = np.zeros((4, 6, 3), np.uint8)
    a[:] = (60, 160, 60)
    a[:, 3:] = (128, 128, 128)  # neutral grey stays neutral
    p = _save(tmp_path, "wide.png", Image.fromarray(a), icc_profile=wide)
    out = load_image(p).astype(int)
    green, grey = out[0, 0], out[0, 4]
    assert green[1] - green[0] > 130 and green[1] - green[2] > 80, green  # more saturated
    assert abs(grey[0] - grey[1]) <= 1 and abs(grey[1] - grey[2]) <= 1, grey
    # RGBA keeps its alpha through the conversion (then composited on white)
    rgba = np.dstack([a, np.full((4, 6), 255, np.uint8)])
    rgba[0, 1, 3] = 0
    out = load_image(_save(tmp_path, "wide_rgba.png", Image.fromarray(rgba), icc_profile=wide))
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 0], green)
    # sRGB-tagged, untagged and broken-profile images keep their values exactly
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, kw in (("srgb.png", {"icc_profile": srgb}), ("plain.png", {}),
                     ("broken.png", {"icc_profile": b"not a profile" * 20})):
        back = load_image(_save(tmp_path, name, Image.fromarray(a), **kw))
        np.testing.assert_array_equal(back, a)


def test_long_output_names_fit_the_temporary_name(tmp_path, tiny_image):
    """A 250-byte output name is legal, but ".NAME.xxxx.partSUFFIX" was not (ENAMETOOLONG):
    every long name failed. Non-ASCII names count in bytes."""
    for stem in ("a" * 246, "é" * 120):
        dest = tmp_path / f"{stem}.png"
        assert len(os.fsencode(dest.name)) <= 255
        save_image(dest, tiny_image)
        np.testing.assert_array_equal(load_image(dest), tiny_image)
        dest.unlink()
    assert os.listdir(tmp_path) == []


def test_a_gencodec_stream_given_as_an_image_is_named(tmp_path, tiny_image):
    from gencodec.codecs_ext import get_codec

    p = tmp_path / "photo.gnc"
    p.write_bytes(get_codec("jpeg").encode(tiny_image))
    with pytest.raises(InputError, match="photo.gnc: is a gencodec stream, not an image"):
        load_image(p)


def test_pixel_limit_from_the_environment(monkeypatch):
    """GENCODEC_MAX_PIXELS=1e9 used to crash every command at import (int("1e9"))."""
    for raw, expect in (("1e9", 10**9), ("268_435_456", 1 << 28), (" 5000 ", 5000)):
        monkeypatch.setenv("GENCODEC_MAX_PIXELS", raw)
        assert imageio.max_pixels_from_environment() == expect
    monkeypatch.delenv("GENCODEC_MAX_PIXELS")
    assert imageio.max_pixels_from_environment() == imageio.DEFAULT_MAX_PIXELS == 1 << 28
    for bad in ("abc", "-5", "0", "2.5", "inf", "nan"):
        monkeypatch.setenv("GENCODEC_MAX_PIXELS", bad)
        with pytest.warns(UserWarning, match="not a positive whole number"):
            assert imageio.max_pixels_from_environment() == imageio.DEFAULT_MAX_PIXELS


def test_pil_images_are_converted_by_mode_not_read_as_raw_samples():
    """``codec.encode(pil_image)`` (scripting with Pillow): a palette image used to be
    coded as its indices in grey, a CMYK one with K read as alpha."""
    p = Image.new("P", (4, 2), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    np.testing.assert_array_equal(as_rgb_uint8(p)[0, 0], [255, 0, 0])
    cmyk = Image.new("CMYK", (4, 2), (0, 255, 255, 0))  # red
    out = as_rgb_uint8(cmyk)
    assert out.shape == (2, 4, 3) and out[0, 0, 0] > 200 and out[0, 0, 1:].max() < 60
    ycc = Image.new("RGB", (4, 2), (0, 0, 255)).convert("YCbCr")
    assert as_rgb_uint8(ycc)[0, 0, 2] > 240 and as_rgb_uint8(ycc)[0, 0, :2].max() < 15
    la = Image.new("LA", (4, 2), (0, 0))  # fully transparent -> white
    np.testing.assert_array_equal(as_rgb_uint8(la)[0, 0], [255, 255, 255])
    rgb = Image.new("RGB", (4, 2), (1, 2, 3))
    np.testing.assert_array_equal(as_rgb_uint8(rgb), np.asarray(rgb))


def test_float_image_with_overshoot_is_not_read_as_0_255(tmp_path):
    """A [0, 1] float image with ringing above 1 (1.02) used to be divided by 255: black."""
    f = np.array([[0.0, 0.5, 1.0, 1.02]], np.float32)
    out = load_image(_save(tmp_path, "f.tif", Image.fromarray(f, "F")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255, 255])
    g = np.array([[0.0, 100.0, 255.0]], np.float32)  # an 8-bit range float image
    out = load_image(_save(tmp_path, "g.tif", Image.fromarray(g, "F")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255])


# -- issue 10: links, standard input and output, write errors, output formats ----------------

def test_dangling_symlink_output_is_written_through_like_a_valid_one(tmp_path):
    """One rule for links: the file a link names gets the output and the link stays.
    A dangling link was replaced by a plain file under --force (and needed --force,
    though nothing existed to overwrite)."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    link = tmp_path / "out.bin"
    link.symlink_to(real_dir / "made.bin")  # dangling: made.bin does not exist yet
    write_bytes_atomic(link, b"first")  # nothing is overwritten: no force needed
    assert link.is_symlink() and (real_dir / "made.bin").read_bytes() == b"first"
    with pytest.raises(OutputExistsError, match="made.bin: exists"):
        write_bytes_atomic(link, b"second")
    (real_dir / "made.bin").unlink()
    write_bytes_atomic(link, b"second", force=True)  # dangling again, with force
    assert link.is_symlink() and (real_dir / "made.bin").read_bytes() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "real"]
    assert os.listdir(real_dir) == ["made.bin"]
    # a chain of links ends at a file; a loop is a one-line error
    chain = tmp_path / "chain.bin"
    chain.symlink_to(link)
    write_bytes_atomic(chain, b"third", force=True)
    assert chain.is_symlink() and (real_dir / "made.bin").read_bytes() == b"third"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InputError, match="symbolic link loop"):
        write_bytes_atomic(tmp_path / "a", b"x", force=True)
    # a dangling link into a missing folder names that folder
    (tmp_path / "nowhere.bin").symlink_to(tmp_path / "missing" / "x.bin")
    with pytest.raises(InputError, match="folder .*missing does not exist"):
        write_bytes_atomic(tmp_path / "nowhere.bin", b"x", force=True)


def test_write_errors_name_the_output(tmp_path, monkeypatch):
    """A full disk used to give "[Errno 28] No space left on device" naming nothing."""
    dest = tmp_path / "out.json"
    with pytest.raises(GencodecError) as e:
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert str(e.value) == f"{dest}: cannot write: No space left on device"
    assert os.listdir(tmp_path) == []

    def refuse(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(imageio.os, "replace", refuse)
    with pytest.raises(GencodecError, match=r"out.json: cannot write: Read-only file system"):
        write_bytes_atomic(dest, b"x", force=True)
    assert os.listdir(tmp_path) == []
    # an error about another file (an input read while writing) keeps its own words
    with pytest.raises(FileNotFoundError):
        with atomic_output(tmp_path / "o.bin") as tmp:
            open(tmp_path / "no-such-input")


def test_dash_is_standard_input_and_output(tmp_path, monkeypatch, capsysbinary, tiny_image):
    """``-`` was a file named "-" as an output and "no such file" as an input."""
    png = io.BytesIO()
    Image.fromarray(tiny_image).save(png, format="PNG")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(png.getvalue())))
    assert np.array_equal(load_image("-"), tiny_image)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(InputError, match="<stdin>: empty input"):
        load_image("-")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"stream")))
    assert imageio.read_input("-") == b"stream"

    monkeypatch.chdir(tmp_path)
    assert imageio.is_stdout("-") and not imageio.is_stdout(tmp_path / "x")
    imageio.check_output("-")  # never "exists"
    write_bytes_atomic("-", b"to stdout")
    save_image("-", tiny_image)  # no extension: PNG on standard output
    out = capsysbinary.readouterr().out
    assert out.startswith(b"to stdout\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out[len(b"to stdout"):]))),
                          tiny_image)
    assert os.listdir(tmp_path) == []  # no file named "-", no temporary left


def test_image_format_comes_from_the_extension(tmp_path):
    assert imageio.image_format(tmp_path / "a.PNG") == "PNG"
    assert imageio.image_format(tmp_path / "a.jpg") == "JPEG"
    assert imageio.image_format("-") == "PNG"
    assert imageio.image_format("/dev/null") == "PNG"
    # the temporary name's ".part" used to appear in this message
    with pytest.raises(InputError) as e:
        save_image(tmp_path / "noext", np.zeros((4, 4, 3), np.uint8))
    assert str(e.value) == (f"{tmp_path / 'noext'}: no extension to choose the image format "
                            "by; name it noext.png (or .jpg, .webp, .tif, ...)")
    with pytest.raises(InputError, match=r"unknown image file extension \.xyz"):
        imageio.image_format(tmp_path / "a.xyz")
    assert os.listdir(tmp_path) == []
