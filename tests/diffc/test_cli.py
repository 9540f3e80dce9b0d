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
