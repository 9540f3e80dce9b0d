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
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["codec", "quality", "back"]
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith("native")}
    for name in STOCK:
        assert name in rows, out
        assert "UNAVAILABLE" not in rows[name], rows[name]
    if shutil.which("bpgenc") is None:
        assert "FALLBACK: HEVC intra" in rows["bpg"] and "x265" in rows["bpg"]
    assert "qp 0..51, lower = better" in rows["bpg"]
    assert "quality 1..100, higher = better" in rows["jpeg"]
    assert "Pillow" in rows["jpeg"] and "pillow-heif" in rows["heif"]
    assert "native core:" in out


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


def test_demo_writes_table_json_and_plot(capsys, tmp_path, monkeypatch, half_photos):
    from gencodec.cli import demo

    small = np.ascontiguousarray(half_photos["astronaut"][:64, :96])
    monkeypatch.setattr(demo, "bundled_photo", lambda: small)
    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--out", out_dir)
    assert rc == 0, err
    for name in ("jpeg", "webp", "bpg", "heif", "avif"):
        assert sum(line.startswith(name) for line in out.splitlines()) == 5
    data = json.loads((out_dir / "codec_comparison.json").read_text())
    assert set(data["results"]) == {"jpeg", "webp", "bpg", "heif", "avif"}
    for points in data["results"].values():
        assert len(points) == 5
        psnrs = [p["psnr"] for p in points]
        assert psnrs == sorted(psnrs)  # settings go from low to high quality
    with Image.open(out_dir / "codec_comparison.png") as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 400
    # a second run refuses to overwrite without --force
    rc, _, err = run(capsys, "demo", "--out", out_dir)
    assert_one_line_error(rc, err, "exists")
    assert run(capsys, "demo", "--out", out_dir, "--force")[0] == 0


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
    (["-c", "jpeg", "-O", "colour=blue"], "bad option"),
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
