"""'gencodec eval -O CODEC:KEY=VALUE': per-codec options (an osdiff model folder, a JPEG
subsampling) reach the codec, are part of the run's configuration, and points made with
another model (retrained in the same folder) are redone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gencodec.cli.main import main

pytest.importorskip("skimage")

BASE = ["eval", "--images", "skimage:astronaut", "--crop", "64", "--metrics", "psnr-rgb",
        "--jobs", "1"]


def _points(out, codec):
    return json.loads((out / "points" / "none" / codec / "astronaut.json").read_text())


def test_codec_option_reaches_the_codec_and_is_part_of_the_configuration(tmp_path, capsys):
    out = tmp_path / "r"
    args = [*BASE, "--codecs", "jpeg", "--qualities", "jpeg=30,50,70,90", "--out", str(out)]
    assert main([*args, "-O", "jpeg:subsampling=444"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["codec_options"] == {"jpeg": {"subsampling": 444}}
    with_444 = {p["quality"]: p["bytes"] for p in _points(out, "jpeg")["points"]}
    # the same folder with the default subsampling is another configuration
    capsys.readouterr()
    assert main(args) == 2
    assert "another configuration (codec_options)" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    with_420 = {p["quality"]: p["bytes"] for p in _points(out, "jpeg")["points"]}
    assert all(with_444[q] > with_420[q] for q in with_420)  # 4:4:4 keeps more chroma
    assert "codec_options" not in json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("bad, message", [
    ("jpeg", "not CODEC:KEY=VALUE"),
    ("webp:method=4", "webp is not in --codecs"),
    ("jpeg:colour=1", "unknown option colour"),
])
def test_bad_codec_options_are_refused(tmp_path, capsys, bad, message):
    assert main([*BASE, "--codecs", "jpeg", "-O", bad, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_osdiff_model_folder_is_evaluated_and_a_retrained_one_redone(tmp_path):
    pytest.importorskip("diffusers", reason="OSDiff needs gencodec[diffusion]")
    spec = importlib.util.spec_from_file_location(
        "osdiff_tiny", Path(__file__).parents[1] / "osdiff" / "tiny.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    make_osdiff_dir = tiny.make_osdiff_dir

    model = make_osdiff_dir(tmp_path / "sd", seed=0, qualities=(1, 2))
    out = tmp_path / "r"
    args = [*BASE, "--codecs", "osdiff", "--qualities", "osdiff=1,2", "--out", str(out),
            "-O", f"osdiff:model={model}"]
    assert main(args) == 0
    first = _points(out, "osdiff")
    assert [p["quality"] for p in first["points"]] == [1, 2]
    assert first["codec_id"].startswith("osdiff:") and "sha256:" in first["codec_id"]
    assert all(p["bytes"] > 0 for p in first["points"])
    # a rerun resumes: nothing to redo, the file is unchanged
    assert main(args) == 0
    assert _points(out, "osdiff") == first
    # retrained weights in the same folder: same configuration, new points
    make_osdiff_dir(model, seed=1, qualities=(1, 2))
    assert main(args) == 0
    second = _points(out, "osdiff")
    assert second["codec_id"] != first["codec_id"]
