"""``gencodec encode/decode --codec diffc`` and ``gencodec diffc calibrate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gencodec.cli.main import main

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")


def test_encode_decode_max_bytes(tmp_path, photo32, profile_file, psnr):
    src, enc = tmp_path / "in.png", tmp_path / "s.gnc"
    Image.fromarray(photo32).save(src)
    prof = ["-O", f"profile={profile_file}"]
    assert main(["encode", str(src), "-o", str(enc), "--codec", "diffc", "-q", "6",
                 "--model", "gaussian-spectral", *prof]) == 0
    assert main(["decode", str(enc), "-o", str(tmp_path / "full.png"), *prof]) == 0
    n = enc.stat().st_size
    assert main(["decode", str(enc), "-o", str(tmp_path / "part.png"), "--max-bytes",
                 str(n // 2), *prof]) == 0
    full = np.asarray(Image.open(tmp_path / "full.png"))
    part = np.asarray(Image.open(tmp_path / "part.png"))
    assert psnr(full, photo32) > psnr(part, photo32)
    enc.write_bytes(enc.read_bytes()[:-3])
    assert main(["decode", str(enc), "-o", str(tmp_path / "cut.png"), *prof]) == 2


def test_raw_diffc_is_refused(tmp_path, photo32, capsys):
    """A DiffC payload without its container has no size or model fingerprint: no file
    anyone could decode, so --raw refuses it and writes nothing."""
    src, out = tmp_path / "in.png", tmp_path / "s.bin"
    Image.fromarray(photo32).save(src)
    assert main(["encode", str(src), "-o", str(out), "--codec", "diffc", "-q", "2",
                 "--raw"]) == 2
    assert "keep the container" in capsys.readouterr().err
    assert not out.exists()


def test_calibrate(tmp_path, skimage_photos):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("coffee", "chelsea"):
        Image.fromarray(skimage_photos[name][100:164, 100:164]).save(folder / f"{name}.png")
    out = tmp_path / "profile.json"
    assert main(["diffc", "calibrate", "--images", str(folder), "-o", str(out), "--size", "32",
                 "--candidates", "10", "--targets", "500,100", "--t-final", "20"]) == 0
    d = json.loads(out.read_text())
    assert d["timesteps"][0] == 999 and d["timesteps"][-1] == 20
    assert {500, 100} <= set(d["timesteps"])
    assert len(d["kl_bits"]) == len(d["timesteps"]) and 0.5 <= d["index_model"]["exponent"] <= 4
    assert main(["diffc", "calibrate", "--images", str(folder), "-o", str(out)]) == 2  # exists


@pytest.mark.parametrize("name, array", [
    ("gray7x13.png", np.arange(91, dtype=np.uint8).reshape(13, 7) * 2),
    ("rgba1x1.png", np.array([[[200, 10, 50, 128]]], np.uint8)),
    ("wide.png", np.tile(np.arange(900, dtype=np.uint8)[None, :, None] % 251, (9, 1, 3))),
])
def test_cli_codes_gray_rgba_tiny_and_wide_images(tmp_path, profile_file, name, array):
    """Images smaller than the model's least side (8) used to be refused; gray and RGBA
    input come out as RGB at the input's size."""
    src, enc, out = tmp_path / name, tmp_path / "s.gnc", tmp_path / "out.png"
    Image.fromarray(array).save(src)
    prof = ["-O", f"profile={profile_file}"]
    assert main(["encode", str(src), "-o", str(enc), "--codec", "diffc", "-q", "2", *prof]) == 0
    assert main(["decode", str(enc), "-o", str(out), *prof]) == 0
    with Image.open(out) as im:
        assert im.size == (array.shape[1], array.shape[0]) and im.mode == "RGB"


@pytest.mark.parametrize("option", [
    ["--candidates", "0"], ["--candidates", "1"], ["--t-final", "2000"], ["--t-final", "-5"],
    ["--size", "0"], ["--max-images", "0"], ["--targets", "5000"], ["--step-bits", "-1"],
    ["--chunk-bits", "30"], ["--padding-bits", "9"],
])
def test_calibrate_refuses_bad_options_before_measuring(tmp_path, skimage_photos,
                                                        monkeypatch, option):
    """These crashed with a traceback (IndexError, ValueError), ran the whole measurement
    before refusing (--chunk-bits), or wrote a nonsense profile (negative bits)."""
    from gencodec.diffc import calibrate

    def measure(*args, **kwargs):
        raise AssertionError("measured before checking the options")

    monkeypatch.setattr(calibrate, "measure", measure)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(skimage_photos["coffee"][:40, :40]).save(folder / "a.png")
    assert main(["diffc", "calibrate", "--images", str(folder), "-o", str(tmp_path / "p.json"),
                 "--size", "32", *option]) == 2
    assert not (tmp_path / "p.json").exists()


def test_calibrate_help_explains_every_option():
    from gencodec.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    diffc = sub.choices["diffc"]
    calib = next(a for a in diffc._actions if a.dest == "diffc_command").choices["calibrate"]
    for action in calib._actions:
        if action.dest in ("help", "debug"):
            continue
        assert action.help and len(action.help) > 10, action.dest
        if action.default not in (None, False) and action.required is False:
            assert "default" in action.help, action.dest


# -- issue 10 (part B): what the DiffC command lines say ---------------------------------------

def test_bpp_between_two_steps_gets_a_note(tmp_path, photo32, profile_file, capsys):
    """``--bpp 1.0`` gave 1.229 bpp with no word: DiffC's rate moves in whole steps."""
    from gencodec.codecs_ext import get_codec

    src, enc = tmp_path / "in.png", tmp_path / "s.gnc"
    Image.fromarray(photo32).save(src)
    codec = get_codec("diffc", profile=str(profile_file))
    rates = [len(codec.encode(photo32, k)) * 8 / photo32[..., 0].size  # longest first:
             for k in range(codec.quality.hi, 0, -1)][::-1]  # the others are cut from it
    k = max(range(len(rates) - 1), key=lambda i: rates[i + 1] / rates[i])  # widest gap
    lo, hi = rates[k], rates[k + 1]
    assert hi > 1.2 * lo  # a target between them is > 5% from both
    target = (lo + hi) / 2
    capsys.readouterr()
    assert main(["encode", str(src), "-o", str(enc), "--codec", "diffc", "--bpp",
                 f"{target:.6f}", "-O", f"profile={profile_file}"]) == 0
    err = capsys.readouterr().err
    assert (f"falls between adjacent settings steps={k + 1} ({lo:.4f} bpp) and "
            f"steps={k + 2} ({hi:.4f} bpp)") in err, err
    written = enc.stat().st_size * 8 / photo32[..., 0].size
    assert f"wrote the nearest, {written:.4f} bpp" in err


def test_info_and_max_bytes_name_model_profile_and_steps(tmp_path, photo32, profile_file,
                                                         capsys):
    """``info`` showed no model, profile or step count for a DiffC stream, ``decode
    --max-bytes`` did not say how many steps it used, and ``decode -O seed=5`` was
    silently ignored."""
    from gencodec.codecs_ext import get_codec

    src, enc = tmp_path / "in.png", tmp_path / "s.gnc"
    Image.fromarray(photo32).save(src)
    prof = ["-O", f"profile={profile_file}"]
    assert main(["encode", str(src), "-o", str(enc), "--codec", "diffc", "-q", "6",
                 "-O", "seed=7", *prof]) == 0
    capsys.readouterr()
    assert main(["info", str(enc), *prof]) == 0
    out = capsys.readouterr().out
    assert "steps:         6 coded, seed 7" in out
    assert f"model:         gaussian-spectral, profile {profile_file} (fingerprint matches)" \
        in out
    assert "profile:       6 of 8 steps (x_t at t=90)" in out  # the fixture's profile
    assert main(["info", str(enc)]) == 0  # the embedded model's own profile is not it
    out = capsys.readouterr().out
    assert "model:         unknown: not gaussian-spectral with the model's own " \
           "diffc_profile.json; decoding needs --model and -O profile=" in out

    data = enc.read_bytes()
    n = len(data) // 2
    codec = get_codec("diffc", profile=str(profile_file))
    k = codec.coded_steps(data[:n])
    assert 0 < k < 6
    assert main(["decode", str(enc), "-o", str(tmp_path / "part.png"), "--max-bytes", str(n),
                 *prof]) == 0
    out = capsys.readouterr().out
    assert f"part.png: diffc 32x32, {k} of 8 steps (x_t at " \
           f"t={codec.profile.timesteps[k - 1]}) from the first {n} of {len(data)} bytes" in out

    assert main(["decode", str(enc), "-o", str(tmp_path / "seed.png"), "-O", "seed=5",
                 *prof]) == 2
    assert "seed is an encoding option of diffc" in capsys.readouterr().err
    assert not (tmp_path / "seed.png").exists()
