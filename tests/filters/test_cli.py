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
def test_commands_say_a_model_is_needed(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no preprocessing model given" in err and "--model" in err


def test_preprocess_webp(compact_dir, photo, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    out, pre = tmp_path / "out.webp", tmp_path / "pre.png"
    assert main(["preprocess", str(src), "--model", str(compact_dir), "--codec", "webp",
                 "--quality", "70", "-o", str(out), "--save-preprocessed", str(pre)]) == 0
    assert "bpp" in capsys.readouterr().out
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
