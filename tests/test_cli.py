"""The gencodec command end to end in a temporary folder, error paths included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gencodec import container
from gencodec.cli.main import main
from gencodec.cli.options import parse_codec_options
from gencodec.errors import InputError

STOCK = ("jpeg", "webp", "bpg", "heif", "avif", "x265")


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, match=None):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gencodec: error: "), err
    assert "Traceback" not in err
    if match is not None:
        assert match in lines[0], lines[0]


@pytest.fixture()
def photo_png(tmp_path, half_photos) -> Path:
    p = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(half_photos["chelsea"][:120, :161])).save(p)  # odd
    return p


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# -- happy paths ------------------------------------------------------------------------

def test_codecs_lists_every_codec_and_its_back_end(capsys):
    rc, out, err = run(capsys, "codecs")
    assert rc == 0 and err == ""
    table, options, native = out.split("\n\n")
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["codec", "quality", "back"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    # the options each codec takes, with their defaults, so -O is discoverable
    opts = {ln.split()[0]: ln for ln in options.splitlines()[1:]}
    assert opts["jpeg"].split()[1:] == ["subsampling=420"]
    assert "preset=medium" in opts["bpg"] and "chroma=420" in opts["bpg"]
    assert "speed=6" in opts["avif"] and "method=6" in opts["webp"]
    for name in STOCK:
        assert name in rows, out
        assert "UNAVAILABLE" not in rows[name], rows[name]
    if shutil.which("bpgenc") is None:
        assert "FALLBACK: HEVC intra" in rows["bpg"] and "x265" in rows["bpg"]
    assert "qp 0..51, lower = better" in rows["bpg"]
    assert "quality 1..100, higher = better" in rows["jpeg"]
    assert "Pillow" in rows["jpeg"] and "pillow-heif" in rows["heif"]
    assert native.startswith("native core:")


@pytest.mark.parametrize("codec", ["jpeg", "webp", "bpg", "heif", "avif"])
def test_encode_info_decode(capsys, tmp_path, photo_png, codec, psnr):
    stream, png = tmp_path / f"s.{codec}.gnc", tmp_path / "back.png"
    rc, out, err = run(capsys, "encode", photo_png, "-o", stream, "--codec", codec)
    assert rc == 0, err
    assert out.startswith(f"{stream}: {codec} ") and "161x120" in out and "bpp" in out
    h = container.read_header(stream.read_bytes())
    assert (h.codec, h.width, h.height) == (codec, 161, 120)

    rc, out, err = run(capsys, "info", stream)
    assert rc == 0, err
    assert f"codec:         {codec}" in out and "size:          161x120" in out
    assert "none (stock codec)" in out and "integrity:     ok" in out

    rc, out, err = run(capsys, "decode", stream, "-o", png)
    assert rc == 0, err
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (161, 120)
        back = np.asarray(im.convert("RGB"))
    with Image.open(photo_png) as im:
        orig = np.asarray(im.convert("RGB"))
    assert psnr(orig, back) > 28
    assert _listing(tmp_path) == sorted(["photo.png", stream.name, "back.png"])


def test_encode_quality_and_options(capsys, tmp_path, photo_png):
    lo, hi = tmp_path / "lo.gnc", tmp_path / "hi.gnc"
    assert run(capsys, "encode", photo_png, "-o", lo, "-c", "jpeg", "--quality", "20")[0] == 0
    rc, out, _ = run(capsys, "encode", photo_png, "-o", hi, "-c", "jpeg", "-q", "90",
                     "-O", "subsampling=444")
    assert rc == 0 and "quality=90" in out
    assert hi.stat().st_size > lo.stat().st_size
    payload = container.unpack(hi.read_bytes()).payload
    from io import BytesIO

    from PIL import JpegImagePlugin
    with Image.open(BytesIO(payload)) as im:
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4 really used


def test_encode_bpp_target(capsys, tmp_path, photo_png):
    out_path = tmp_path / "b.gnc"
    rc, out, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "webp", "--bpp", "1.0")
    assert rc == 0, err
    bpp = out_path.stat().st_size * 8 / (161 * 120)
    assert abs(bpp - 1.0) < 0.1, bpp
    assert f"{bpp:.4f} bpp" in out


def test_encode_raw_writes_the_stock_file(capsys, tmp_path, photo_png):
    for codec, fmt, ext in (("jpeg", "JPEG", "jpg"), ("webp", "WEBP", "webp"),
                            ("heif", "HEIF", "heic"), ("avif", "AVIF", "avif")):
        p = tmp_path / f"raw.{ext}"
        assert run(capsys, "encode", photo_png, "-o", p, "-c", codec, "--raw")[0] == 0
        with Image.open(p) as im:
            assert im.format == fmt and im.size == (161, 120)


def test_force_overwrites(capsys, tmp_path, photo_png):
    out_path = tmp_path / "s.gnc"
    out_path.write_bytes(b"precious")
    rc, _, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "jpeg")
    assert_one_line_error(rc, err, "exists (use --force")
    assert out_path.read_bytes() == b"precious"
    assert run(capsys, "encode", photo_png, "-o", out_path, "-c", "jpeg", "--force")[0] == 0
    assert out_path.read_bytes()[:4] == b"GNCD"
    png = tmp_path / "d.png"
    png.write_bytes(b"old")
    rc, _, err = run(capsys, "decode", out_path, "-o", png)
    assert_one_line_error(rc, err, "exists")
    assert png.read_bytes() == b"old"
    assert run(capsys, "decode", out_path, "-o", png, "-f")[0] == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert _listing(tmp_path) == ["d.png", "photo.png", "s.gnc"]


def test_rgba_and_16bit_inputs(capsys, tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert run(capsys, "encode", tmp_path / "a.png", "-o", tmp_path / "a.gnc", "-c", "jpeg",
               "-q", "95")[0] == 0
    assert run(capsys, "decode", tmp_path / "a.gnc", "-o", tmp_path / "a2.png")[0] == 0
    back = np.asarray(Image.open(tmp_path / "a2.png").convert("RGB")).astype(int)
    assert (np.abs(back[5, 25] - [255, 255, 255]) < 12).all()
    assert (np.abs(back[5, 4] - [255, 0, 0]) < 40).all()
    g16 = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert run(capsys, "encode", tmp_path / "g16.png", "-o", tmp_path / "g.gnc", "-c",
               "webp")[0] == 0


# -- error paths ------------------------------------------------------------------------

def test_missing_input(capsys, tmp_path):
    rc, _, err = run(capsys, "encode", tmp_path / "nope.png", "-o", tmp_path / "o", "-c", "jpeg")
    assert_one_line_error(rc, err, "no such file")
    for cmd in (["decode", tmp_path / "nope.gnc", "-o", tmp_path / "o.png"],
                ["info", tmp_path / "nope.gnc"]):
        rc, _, err = run(capsys, *cmd)
        assert_one_line_error(rc, err, "no such file")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, not an image\n" * 10, "not a recognised image"),
    ("truncated-png", "cannot decode image"),
])
def test_bad_input_images(capsys, tmp_path, photo_png, content, match):
    bad = tmp_path / "bad.png"
    if content == "truncated-png":
        content = photo_png.read_bytes()[:2000]
    bad.write_bytes(content)
    out_path = tmp_path / "out.gnc"
    rc, _, err = run(capsys, "encode", bad, "-o", out_path, "-c", "jpeg")
    assert_one_line_error(rc, err, match)
    assert not out_path.exists()
    assert _listing(tmp_path) == ["bad.png", "photo.png"]


def test_pixel_limit_via_environment_module(capsys, tmp_path, photo_png, monkeypatch):
    from gencodec import imageio

    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "o.gnc", "-c", "jpeg")
    assert_one_line_error(rc, err, "above the limit of 1000")


@pytest.mark.parametrize("argv, match", [
    (["-c", "nope"], "unknown codec 'nope'"),
    (["-c", "jpeg", "-q", "101"], "quality 101 is outside 1..100"),
    (["-c", "bpg", "-q", "60"], "qp 60 is outside 0..51 (lower is better quality)"),
    (["-c", "jpeg", "--bpp", "-1"], "positive"),
    (["-c", "jpeg", "-O", "subsampling"], "not KEY=VALUE"),
    (["-c", "jpeg", "-O", "subsampling=411"], "subsampling"),
    (["-c", "jpeg", "-O", "colour=blue"], "unknown option colour; jpeg options: subsampling"),
    (["-c", "x265"], "video codec"),
])
def test_bad_encode_options(capsys, tmp_path, photo_png, argv, match):
    out_path = tmp_path / "o.gnc"
    rc, _, err = run(capsys, "encode", photo_png, "-o", out_path, *argv)
    assert_one_line_error(rc, err, match)
    assert not out_path.exists()


def test_output_folder_missing(capsys, tmp_path, photo_png):
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "no" / "o.gnc", "-c", "jpeg")
    assert_one_line_error(rc, err, "does not exist")


def test_decode_damaged_streams(capsys, tmp_path, photo_png):
    good = tmp_path / "good.gnc"
    assert run(capsys, "encode", photo_png, "-o", good, "-c", "webp")[0] == 0
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x20
    newer = bytearray(data)
    newer[4] = 9
    cases = {"trunc.gnc": (data[:-10], "truncated payload"),
             "flip.gnc": (bytes(flipped), "corrupt payload (CRC mismatch)"),
             "head.gnc": (data[:30], "truncated header"),
             "magic.gnc": (b"JUNK" + data[4:], "wrong magic"),
             "version.gnc": (bytes(newer), "unknown format version 9"),
             "empty.gnc": (b"", "empty stream"),
             "png.gnc": (photo_png.read_bytes(), "wrong magic")}
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        out_png = tmp_path / f"{name}.png"
        rc, _, err = run(capsys, "decode", tmp_path / name, "-o", out_png)
        assert_one_line_error(rc, err, match)
        assert not out_png.exists()
        rc, _, err = run(capsys, "info", tmp_path / name)
        assert_one_line_error(rc, err, match)
    assert not any(n.endswith(".png") and n != "photo.png" for n in os.listdir(tmp_path))
    assert not any(".part" in n for n in os.listdir(tmp_path))


def test_decode_options(capsys, tmp_path, photo_png):
    s = tmp_path / "s.gnc"
    assert run(capsys, "encode", photo_png, "-o", s, "-c", "jpeg")[0] == 0
    rc, _, err = run(capsys, "decode", s, "-o", tmp_path / "o.png", "--max-bytes", "100")
    assert_one_line_error(rc, err, "not progressive")
    rc, _, err = run(capsys, "decode", s, "-o", tmp_path / "o.xyz")
    assert_one_line_error(rc, err, "cannot write")
    assert _listing(tmp_path) == ["photo.png", "s.gnc"]


def test_decode_refuses_video(capsys, tmp_path):
    from gencodec.codecs_ext import get_codec

    clip = np.zeros((2, 64, 64, 3), np.uint8)
    (tmp_path / "v.gnc").write_bytes(get_codec("x265", preset="ultrafast").encode(clip, 30))
    rc, _, err = run(capsys, "decode", tmp_path / "v.gnc", "-o", tmp_path / "v.png")
    assert_one_line_error(rc, err, "video")
    rc, out, _ = run(capsys, "info", tmp_path / "v.gnc")
    assert rc == 0 and "codec:         x265" in out


def test_failing_write_leaves_no_partial_file(capsys, tmp_path, photo_png, monkeypatch):
    """The disk fills up half way through writing: no output, no temporary file."""
    real_write_bytes = Path.write_bytes

    def half_then_fail(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    out_path = tmp_path / "o.gnc"
    rc, _, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "jpeg")
    assert_one_line_error(rc, err, "No space left on device")
    assert _listing(tmp_path) == ["photo.png"]


def test_failing_encoder_leaves_no_file(capsys, tmp_path, photo_png, monkeypatch):
    from gencodec.codecs_ext.jpeg import JpegCodec
    from gencodec.errors import GencodecError

    def boom(self, image, quality):
        raise GencodecError("encoder exploded")

    monkeypatch.setattr(JpegCodec, "_encode_payload", boom)
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "o.gnc", "-c", "jpeg")
    assert_one_line_error(rc, err, "encoder exploded")
    assert _listing(tmp_path) == ["photo.png"]


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    capsys.readouterr()


def test_parse_codec_options():
    assert parse_codec_options(["subsampling=444", "method=4", "speed=fast", "a-b=-3",
                                "x=4:2:0", "e="]) == {
        "subsampling": 444, "method": 4, "speed": "fast", "a_b": -3, "x": "4:2:0", "e": ""}
    assert parse_codec_options(None) == {}
    for bad in ("novalue", "=3"):
        with pytest.raises(InputError):
            parse_codec_options([bad])


# -- the installed command, in a real process ---------------------------------------------

def _command() -> list[str]:
    script = Path(sys.executable).with_name("gencodec")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gencodec.cli.main"]


def test_console_script_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    out_path = tmp_path / "o.gnc"
    proc = subprocess.run(_command() + ["encode", str(bad), "-o", str(out_path), "-c", "jpeg"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gencodec: error: "), proc.stderr
    assert "bad.png" in lines[0] and "Traceback" not in proc.stderr
    assert not out_path.exists()

    proc = subprocess.run(_command() + ["--debug", "encode", str(bad), "-o", str(out_path),
                                        "-c", "jpeg"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("gencodec: error: ")
    assert not out_path.exists()


# -- farm review: inputs, outputs, honesty of the figures ---------------------------------

def test_output_equal_to_input_never_damages_it(capsys, tmp_path, photo_png):
    before = photo_png.read_bytes()
    (tmp_path / "alias.png").symlink_to(photo_png)
    for out_path in (photo_png, tmp_path / "alias.png"):
        for extra in ([], ["--force"]):
            rc, _, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "jpeg", *extra)
            assert_one_line_error(rc, err, "is also the input")
    assert photo_png.read_bytes() == before
    stream = tmp_path / "s.gnc"
    assert run(capsys, "encode", photo_png, "-o", stream, "-c", "jpeg")[0] == 0
    data = stream.read_bytes()
    rc, _, err = run(capsys, "decode", stream, "-o", stream, "--force")
    assert_one_line_error(rc, err, "is also the input")
    assert stream.read_bytes() == data


def test_raw_bpp_target_and_report_count_the_file_written(capsys, tmp_path, photo_png):
    """With --raw the file is 64 bytes shorter than the stream: the search aims at the
    file's rate and the line printed reports it (it used to report the stream's)."""
    out_path = tmp_path / "b.jpg"
    rc, out, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "jpeg", "--raw",
                       "--bpp", "1.0")
    assert rc == 0, err
    size = out_path.stat().st_size
    bpp = size * 8 / (161 * 120)
    assert f"{size} bytes, {bpp:.4f} bpp" in out
    assert abs(bpp - 1.0) < 0.05, bpp
    with Image.open(out_path) as im:
        assert im.format == "JPEG"


@pytest.mark.parametrize("target, where", [("0.001", "nearest is"), ("500", "nearest is")])
def test_unreachable_bpp_target_is_reported(capsys, tmp_path, photo_png, target, where):
    out_path = tmp_path / "b.gnc"
    rc, out, err = run(capsys, "encode", photo_png, "-o", out_path, "-c", "webp", "--bpp", target)
    assert rc == 0
    assert err.startswith(f"gencodec: note: {target} bpp is out of webp's reach") and where in err
    quality = "quality=0" if target == "0.001" else "quality=100"
    assert quality in err and quality in out
    assert f"{out_path.stat().st_size * 8 / (161 * 120):.4f} bpp" in out


@pytest.mark.parametrize("argv, match", [
    (["-q", "75.5"], "quality 75.5 is not a valid setting"),
    (["--bpp", "inf"], "positive number"),
    (["-O", "preset=bogus", "-c", "bpg"], "preset must be one of"),
])
def test_more_bad_encode_settings(capsys, tmp_path, photo_png, argv, match):
    argv = argv if "-c" in argv else ["-c", "jpeg", *argv]
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "o.gnc", *argv)
    assert_one_line_error(rc, err, match)
    assert _listing(tmp_path) == ["photo.png"]


def test_container_named_like_an_image_gets_a_note(capsys, tmp_path, photo_png):
    rc, out, err = run(capsys, "encode", photo_png, "-o", tmp_path / "x.jpg", "-c", "jpeg")
    assert rc == 0 and "x.jpg holds a gencodec stream" in err and "--raw" in err
    rc, out, err = run(capsys, "encode", photo_png, "-o", tmp_path / "y.jpg", "-c", "jpeg", "--raw")
    assert rc == 0 and err == ""
    rc, _, err = run(capsys, "decode", tmp_path / "y.jpg", "-o", tmp_path / "y.png")
    assert_one_line_error(rc, err, "y.jpg: not a gencodec stream (wrong magic; it looks like "
                                   "a plain JPEG file)")


def test_special_inputs_are_named(capsys, tmp_path):
    fifo = tmp_path / "pipe.gnc"
    os.mkfifo(fifo)
    for argv in (["encode", fifo, "-o", tmp_path / "o.gnc", "-c", "jpeg"],
                 ["decode", fifo, "-o", tmp_path / "o.png"], ["info", fifo]):
        rc, _, err = run(capsys, *argv)  # "empty file" / "no such file" before
        assert_one_line_error(rc, err, "pipe.gnc: not a regular file")
    for argv in (["encode", tmp_path, "-o", tmp_path / "o.gnc", "-c", "jpeg"],
                 ["decode", tmp_path, "-o", tmp_path / "o.png"], ["info", tmp_path]):
        rc, _, err = run(capsys, *argv)
        assert_one_line_error(rc, err, "is a directory")


def test_encode_animation_and_oversized_image_are_one_line_errors(capsys, tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    rc, _, err = run(capsys, "encode", tmp_path / "a.gif", "-o", tmp_path / "a.gnc", "-c", "jpeg")
    assert_one_line_error(rc, err, "a.gif: animated GIF (2 frames)")
    Image.new("RGB", (16400, 1)).save(tmp_path / "wide.png")
    rc, _, err = run(capsys, "encode", tmp_path / "wide.png", "-o", tmp_path / "w.gnc",
                     "-c", "webp")  # a ValueError traceback before
    assert_one_line_error(rc, err, "webp: a 16400x1 image is too large")
    assert _listing(tmp_path) == ["a.gif", "wide.png"]


def test_decode_and_info_errors_name_the_file(capsys, tmp_path, photo_png):
    good = tmp_path / "good.gnc"
    assert run(capsys, "encode", photo_png, "-o", good, "-c", "webp")[0] == 0
    (tmp_path / "cut.gnc").write_bytes(good.read_bytes()[:-5])
    for argv in (["decode", tmp_path / "cut.gnc", "-o", tmp_path / "o.png"],
                 ["info", tmp_path / "cut.gnc"]):
        rc, _, err = run(capsys, *argv)
        assert_one_line_error(rc, err, f"{tmp_path / 'cut.gnc'}: truncated payload")


def test_info_rates_match_encode_and_count_video_frames(capsys, tmp_path, photo_png):
    from gencodec.codecs_ext import get_codec

    s = tmp_path / "s.gnc"
    rc, out, _ = run(capsys, "encode", photo_png, "-o", s, "-c", "jpeg")
    encode_bpp = out.split(", ")[-1].split()[0]
    rc, out, _ = run(capsys, "info", s)
    assert rc == 0
    size = s.stat().st_size
    assert f"stream:        {size} bytes ({encode_bpp} bpp)" in out
    assert f"payload:       {size - 64} bytes" in out
    clip = np.zeros((5, 64, 64, 3), np.uint8)
    v = tmp_path / "v.gnc"
    v.write_bytes(get_codec("x265", preset="ultrafast").encode(clip, 30))
    rc, out, _ = run(capsys, "info", v)
    assert rc == 0 and "frames:        5" in out
    vsize = v.stat().st_size
    assert f"stream:        {vsize} bytes ({vsize * 8 / (5 * 64 * 64):.4f} bpp)" in out


def test_debug_works_after_the_command_name(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    for argv in (["--debug", "encode", bad, "-o", tmp_path / "o", "-c", "jpeg"],
                 ["encode", bad, "-o", tmp_path / "o", "-c", "jpeg", "--debug"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and "Traceback (most recent call last)" in err
    rc, _, err = run(capsys, "encode", bad, "-o", tmp_path / "o", "-c", "jpeg")
    assert_one_line_error(rc, err, "bad.png")


def test_sigterm_during_the_write_leaves_no_partial_file(capsys, tmp_path, photo_png,
                                                         monkeypatch):
    """A batch scheduler stops the job (SIGTERM) while the output is being written: the
    temporary file is removed, exit code 143."""
    import signal

    real_write_bytes = Path.write_bytes

    def half_then_terminated(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
        raise AssertionError("SIGTERM did not interrupt the write")

    class NotHandledByMain(Exception):
        pass

    def fallback(signum, frame):  # without main's handler: fail the test, not pytest
        raise NotHandledByMain

    monkeypatch.setattr(Path, "write_bytes", half_then_terminated)
    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "o.gnc", "-c", "jpeg")
        assert signal.getsignal(signal.SIGTERM) is fallback  # restored for the caller
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rc == 143 and err.strip() == "gencodec: terminated"
    assert _listing(tmp_path) == ["photo.png"]


def test_out_of_memory_is_one_line(capsys, tmp_path, photo_png, monkeypatch):
    from gencodec.cli import encode

    def no_memory(path):
        raise MemoryError

    monkeypatch.setattr(encode, "load_image", no_memory)
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "o.gnc", "-c", "jpeg")
    assert_one_line_error(rc, err, "out of memory")


def test_non_utf8_file_name_and_closed_pipe(tmp_path, photo_png):
    """A file name that is not UTF-8 under a strict UTF-8 stdout used to crash after
    writing (UnicodeEncodeError traceback); ``gencodec info s | head -1`` used to end
    with 'Broken pipe' and exit code 2."""
    name = os.fsdecode(b"caf\xe9.gnc")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(_command() + ["encode", str(photo_png), "-o", name, "-c", "jpeg"],
                          capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout.startswith(b"caf\xe9.gnc: jpeg quality=75")
    assert (tmp_path / name).is_file()
    child = subprocess.Popen(_command() + ["info", name], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    child.stdout.close()  # the reader is gone before the first line is written
    _, err = child.communicate(timeout=120)
    assert child.returncode == 141 and err == b"", err


def test_library_warnings_are_one_line(capsys, tmp_path):
    """Pillow's "Corrupt EXIF data" warning came out as two lines pointing into
    site-packages; the command prints it as one ``gencodec: warning:`` line."""
    import warnings

    a = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    p = tmp_path / "badexif.jpg"
    Image.fromarray(a).save(p, exif=exif.tobytes())
    data = bytearray(p.read_bytes())
    i = data.find(b"Exif\x00\x00")
    data[i + 10:i + 30] = b"\xff" * 20  # damage the first IFD
    p.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        previous = warnings.showwarning
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
        try:
            rc, out, err = run(capsys, "encode", p, "-o", tmp_path / "o.gnc", "-c", "jpeg")
        finally:
            warnings.showwarning = previous
    assert rc == 0 and "o.gnc: jpeg" in out
    assert err.startswith("gencodec: warning: Corrupt EXIF data"), err
    assert all(line.startswith("gencodec: warning: ") for line in err.splitlines()), err
    assert "site-packages" not in err and "warnings.warn" not in err


@pytest.mark.skipif(shutil.which("bpgenc") is not None, reason="bpgenc writes real .bpg files")
def test_raw_bpg_fallback_is_refused(capsys, tmp_path, photo_png):
    """Without bpgenc, --raw wrote the fallback's tagged HEVC blob under a name like
    x.bpg, a file no other tool opens."""
    rc, _, err = run(capsys, "encode", photo_png, "-o", tmp_path / "x.bpg", "-c", "bpg", "--raw")
    assert_one_line_error(rc, err, "--raw: bpg streams here are not a file other tools open")
    assert _listing(tmp_path) == ["photo.png"]
    assert run(capsys, "encode", photo_png, "-o", tmp_path / "x.gnc", "-c", "bpg")[0] == 0


def test_stream_to_stdout_is_not_mixed_with_the_summary(tmp_path, photo_png):
    """``-o /dev/stdout | next-tool``: the summary line went to stdout after the
    stream, corrupting it; /dev/stdout (a FIFO here) is written into, not replaced."""
    proc = subprocess.run(_command() + ["encode", str(photo_png), "-o", "/dev/stdout", "-c",
                                        "jpeg", "--raw"], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from io import BytesIO

    with Image.open(BytesIO(proc.stdout)) as im:
        assert im.format == "JPEG" and im.size == (161, 120)
    assert proc.stdout.endswith(b"\xff\xd9")  # nothing after the JPEG's end marker
    assert proc.stderr.decode().startswith("/dev/stdout: jpeg quality=75 161x120")


def test_disk_full_while_decoding_leaves_no_partial_image(capsys, tmp_path, photo_png,
                                                          monkeypatch):
    s = tmp_path / "s.gnc"
    assert run(capsys, "encode", photo_png, "-o", s, "-c", "webp")[0] == 0
    real_save = Image.Image.save

    def half_then_full(self, fp, format=None, **params):
        real_save(self, fp, format=format, **params)
        with open(fp, "r+b") as f:
            f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_full)
    rc, _, err = run(capsys, "decode", s, "-o", tmp_path / "d.png")
    assert_one_line_error(rc, err, "No space left on device")
    assert _listing(tmp_path) == ["photo.png", "s.gnc"]


def test_demo_out_must_be_a_folder(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, "demo", "--out", tmp_path / "file")
    assert_one_line_error(rc, err, "exists and is not a folder")


# -- issue 10 (part B): the CLI as a new user meets it ----------------------------------------

def _readme_tour() -> list[str]:
    """The lines of the README's command line tour, as pasted."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Command line tour", 1)[1].split("```sh\n", 1)[1]
    return [ln for ln in block.split("```", 1)[0].splitlines() if ln.strip()]


@pytest.mark.slow  # a bpg bisection on 512x512 and one shell pipeline: ~10 s
def test_readme_tour_runs_as_pasted(tmp_path, monkeypatch, capsys):
    """The tour's third line failed ("photo.gcx: exists (use --force ...)"). Its set-up,
    codecs, encode, info and decode lines run in a fresh folder, one after the other:
    in this process, or through a shell (with the installed command on PATH) for the
    lines with pipes and redirections."""
    import shlex

    lines = [ln for ln in _readme_tour()
             if ln.startswith("python -c ") or ln.split()[:2] in (
                 ["gencodec", "codecs"], ["gencodec", "encode"], ["gencodec", "info"],
                 ["gencodec", "decode"])]
    assert len(lines) >= 8 and lines[0].startswith("python -c ")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    for line in lines:
        argv = shlex.split(line, comments=True)
        if any(tok in ("|", ">", "<") for tok in argv):
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        elif argv[0] == "python":
            exec(argv[2], {})  # python -c CODE
        else:
            assert main(argv[1:]) == 0, f"{line}\n{capsys.readouterr().err}"
    with Image.open(tmp_path / "piped.png") as im:
        assert im.format == "PNG" and im.size == (512, 512)
    with Image.open(tmp_path / "photo.jpg") as im:
        assert im.format == "JPEG"
    assert container.read_header((tmp_path / "photo-bpg.gcx").read_bytes()).codec == "bpg"


def test_unknown_and_encoder_only_options(capsys, tmp_path, photo_png):
    """Unknown -O leaked "JpegCodec.__init__() got an unexpected keyword argument 'foo'";
    decode's own help example (-O subsampling=444) failed on every stream."""
    s = tmp_path / "s.gnc"
    rc, _, err = run(capsys, "encode", photo_png, "-o", s, "-c", "jpeg", "-O", "foo=1")
    assert_one_line_error(rc, err)
    assert err.strip() == "gencodec: error: unknown option foo; jpeg options: subsampling"
    assert run(capsys, "encode", photo_png, "-o", s, "-c", "jpeg")[0] == 0
    rc, _, err = run(capsys, "decode", s, "-o", tmp_path / "o.png", "-O", "subsampling=444")
    assert_one_line_error(rc, err, "subsampling is an encoding option of jpeg")
    rc, _, err = run(capsys, "info", s, "--model", "gaussian-spectral")
    assert_one_line_error(rc, err, "jpeg takes no --model")
    from gencodec.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    decode_help = sub.choices["decode"].format_help()
    assert "subsampling" not in decode_help and "-O profile=profile.json" in decode_help
    assert _listing(tmp_path) == ["photo.png", "s.gnc"]


def test_empty_payload_is_named_not_a_python_object(capsys, tmp_path):
    (tmp_path / "e.gnc").write_bytes(container.pack("jpeg", 8, 8, b""))
    rc, _, err = run(capsys, "decode", tmp_path / "e.gnc", "-o", tmp_path / "e.png")
    assert_one_line_error(rc, err, "e.gnc: jpeg: payload is empty")
    assert "BytesIO" not in err and "0x" not in err


def test_decode_to_a_name_without_extension(capsys, tmp_path, photo_png):
    """The error spoke of the temporary file's ".part" extension, after decoding."""
    s = tmp_path / "s.gnc"
    assert run(capsys, "encode", photo_png, "-o", s, "-c", "jpeg")[0] == 0
    rc, _, err = run(capsys, "decode", s, "-o", tmp_path / "decoded")
    assert_one_line_error(rc, err, "decoded: no extension to choose the image format by; "
                                   "name it decoded.png")
    assert ".part" not in err
    assert _listing(tmp_path) == ["photo.png", "s.gnc"]


def test_dash_means_stdin_and_stdout(capsysbinary, tmp_path, photo_png, monkeypatch):
    """``-o -`` wrote a file named "-", and input ``-`` was "no such file"."""
    import io

    monkeypatch.chdir(tmp_path)
    assert main(["encode", str(photo_png), "-o", "-", "-c", "jpeg"]) == 0
    captured = capsysbinary.readouterr()
    stream = captured.out
    assert container.read_header(stream).codec == "jpeg"
    assert captured.err.startswith(b"-: jpeg quality=75 161x120")  # summary off stdout
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stream)))
    assert main(["decode", "-", "-o", "-"]) == 0
    with Image.open(io.BytesIO(capsysbinary.readouterr().out)) as im:
        assert im.format == "PNG" and im.size == (161, 120)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stream)))
    assert main(["info", "-"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert "file:          <stdin>" in out and "integrity:     ok" in out
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(photo_png.read_bytes())))
    assert main(["encode", "-", "-o", "from-stdin.gnc", "-c", "jpeg"]) == 0
    assert (tmp_path / "from-stdin.gnc").read_bytes() == stream
    assert _listing(tmp_path) == ["from-stdin.gnc", "photo.png"]  # no file named "-"


def test_dev_stdout_redirected_into_a_file(tmp_path, photo_png):
    """``encode -o /dev/stdout > s.gnc`` asked for --force (the shell had created s.gnc)
    and ``decode -o /dev/stdout`` failed on the missing extension."""
    s, png = tmp_path / "s.gnc", tmp_path / "d.png"
    with open(s, "wb") as f:
        proc = subprocess.run(_command() + ["encode", str(photo_png), "-o", "/dev/stdout",
                                            "-c", "jpeg"], stdout=f, stderr=subprocess.PIPE,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().startswith("/dev/stdout: jpeg quality=75 161x120")
    assert container.read_header(s.read_bytes()).codec == "jpeg"
    with open(png, "wb") as f:
        proc = subprocess.run(_command() + ["decode", str(s), "-o", "/dev/stdout"], stdout=f,
                              stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (161, 120)
    assert _listing(tmp_path) == ["d.png", "photo.png", "s.gnc"]


def test_debug_after_a_nested_command(capsys, tmp_path):
    """``gencodec diffc calibrate --debug`` was an argparse usage error."""
    rc = main(["diffc", "calibrate", "--debug", "--images", str(tmp_path / "none"), "-o",
               str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == f"gencodec: error: {tmp_path / 'none'}: no images found"


def test_demo_read_only_output_folder_is_one_plain_line(capsys, tmp_path, monkeypatch):
    import errno

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc, _, err = run(capsys, "demo", "--out", tmp_path / "d")
    assert err.strip() == (f"gencodec: error: {tmp_path / 'd'}: cannot create the output "
                           "folder: Read-only file system")
    assert rc == 2
