"""The filter sub-commands: preprocess, transcode, export, and their errors."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from gencodec.cli.main import main


@pytest.mark.parametrize("argv", [
    ["preprocess", "in.png", "-o", "out.webp", "--codec", "webp"],
    ["transcode", "in.mp4", "out.mp4"],
    ["pipe", "--size", "64x48"],
    ["export", "--format", "onnx", "-o", "m.onnx"],
])
def test_commands_say_a_model_is_needed(argv, capsys, monkeypatch):
    from gencodec.models import DEFAULT_PREPROCESSOR, MODELS

    monkeypatch.delitem(MODELS, DEFAULT_PREPROCESSOR, raising=False)  # none installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no default preprocessing model is installed" in err and "--model" in err


def test_preprocess_webp(compact_dir, photo, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    out, pre = tmp_path / "out.webp", tmp_path / "pre.png"
    assert main(["preprocess", str(src), "--model", str(compact_dir), "--codec", "webp",
                 "--quality", "70", "-o", str(out), "--save-preprocessed", str(pre)]) == 0
    size = out.stat().st_size  # the rate printed is the file's, not the container's
    assert f" {size} bytes, {size * 8 / photo.shape[0] / photo.shape[1]:.4f} bpp" \
        in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.size == (photo.shape[1], photo.shape[0])
    assert np.asarray(Image.open(pre)).shape == photo.shape
    assert main(["preprocess", str(src), "--model", str(compact_dir), "--codec", "webp",
                 "-o", str(out)]) == 2  # exists, no --force
    assert main(["preprocess", str(src), "--model", str(compact_dir), "--codec", "x265",
                 "-o", str(tmp_path / "o.hevc")]) == 2


def test_transcode_cli(compact_dir, testsrc, write_clip, tmp_path, capsys):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_clip(src, testsrc(5, 64, 96), audio=False)
    assert main(["transcode", str(src), str(dst), "--preprocess", str(compact_dir),
                 "-c:v", "libx265", "--crf", "30", "--preset", "ultrafast",
                 "--x265-params", "aq-mode=2", "--no-progress"]) == 0
    assert "5 frames" in capsys.readouterr().out
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
        assert sum(1 for _ in c.decode(video=0)) == 5


def test_export_cli(compact_dir, tmp_path):
    out = tmp_path / "filter.pt"
    assert main(["export", "--model", str(compact_dir), "--format", "torchscript",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    (["--codec", "jpeg", "--quality", "500"], "quality 500 is outside 1..100"),
    (["--codec", "webp"], "cannot decode image"),
])
def test_preprocess_refuses_before_loading_the_model(tmp_path, photo, capsys, args, message):
    """A bad quality or an unreadable image is reported as such, before a (slow) model
    load: the model here does not even exist."""
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    if message.startswith("cannot decode"):
        src.write_bytes(src.read_bytes()[:200])  # a truncated download
    assert main(["preprocess", str(src), "--model", str(tmp_path / "no-model"), *args,
                 "-o", str(tmp_path / "out.img")]) == 2
    err = capsys.readouterr().err
    assert message in err and "no-model" not in err


def test_output_never_replaces_the_input(compact_dir, photo, testsrc, write_clip, tmp_path,
                                          capsys):
    """``-o`` naming the input (or a link to it) is refused even with --force, and the
    input is left as it was."""
    img = tmp_path / "in.png"
    Image.fromarray(photo).save(img)
    clip = tmp_path / "in.mp4"
    write_clip(clip, testsrc(3, 64, 96), audio=False)
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    before = {p: p.read_bytes() for p in (img, clip)}
    runs = [["preprocess", str(img), "--model", str(compact_dir), "-o", str(img)],
            ["preprocess", str(img), "--model", str(compact_dir), "-o", str(tmp_path / "o.png"),
             "--save-preprocessed", str(img)],
            ["transcode", str(clip), str(link), "--preprocess", str(compact_dir),
             "--no-progress"]]
    for argv in runs:
        assert main([*argv, "--force"]) == 2, argv
        assert "is also the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (img, clip)} == before


def test_preprocess_refuses_a_nonstandard_payload(compact_dir, photo, tmp_path, capsys):
    """Without bpgenc, bpg is gencodec's HEVC fallback: no other tool opens its bare
    payload, so preprocess (which writes the bare file) refuses it up front."""
    from gencodec.codecs_ext import get_codec

    if get_codec("bpg").payload_is_standard:
        pytest.skip("bpgenc is installed: bpg files are real BPG")
    src, out = tmp_path / "in.png", tmp_path / "out.bpg"
    Image.fromarray(photo).save(src)
    assert main(["preprocess", str(src), "--model", str(tmp_path / "no-model"),
                 "--codec", "bpg", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not ones other tools open" in err and not out.exists()


@pytest.mark.parametrize("args,output,message", [
    ([], "out.jpg", "written losslessly"),  # no codec: no silent JPEG at quality 75
    (["--codec", "jpeg"], "out.png", "name it .jpg"),
    (["--codec", "webp", "--save-preprocessed", "pre.webp"], "out.webp", "written losslessly"),
])
def test_preprocess_output_names_say_what_they_hold(tmp_path, photo, capsys, args, output,
                                                    message):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    argv = ["preprocess", str(src), "--model", str(tmp_path / "no-model"),
            "-o", str(tmp_path / output)]
    assert main([*argv, *[str(tmp_path / a) if a.startswith("pre.") else a
                         for a in args]]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.parametrize("fmt,name,want", [("onnx", "m.pt", "m.onnx"),
                                           ("torchscript", "m.onnx", "m.pt")])
def test_export_names_say_what_the_file_holds(compact_dir, tmp_path, capsys, fmt, name,
                                             want):
    out = tmp_path / name
    assert main(["export", "--model", str(compact_dir), "--format", fmt, "-o", str(out)]) == 2
    assert f"use -o {tmp_path / want}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("codec,advice", [
    ("diffc", "DiffC codes the image itself with a diffusion model, without preprocessing: "
              "gencodec encode --codec diffc"),
    ("x265", "gencodec transcode --model DIR (or --model none for plain x265)"),
])
def test_preprocess_points_other_codecs_to_their_command(compact_dir, photo, tmp_path,
                                                         capsys, codec, advice):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    assert main(["preprocess", str(src), "--model", str(compact_dir), "--codec", codec,
                 "-o", str(tmp_path / "o.bin")]) == 2
    err = capsys.readouterr().err
    assert advice in err and "for video use" not in err
