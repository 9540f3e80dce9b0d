"""The TorchScript export inside FFmpeg itself: ``-vf dnn_processing=dnn_backend=torch``.

Needs an FFmpeg built with ``--enable-libtorch`` against this environment's torch:
``scripts/build_ffmpeg_torch.sh`` writes one to ``build/ffmpeg-torch/ffmpeg`` (``make
test`` runs it), or point ``GENCODEC_FFMPEG_TORCH`` at another. Skips without one.
Frames go in and out as rawvideo rgb24, so the comparison is against the eager model
on whole frames (the exported graph's pad-and-crop included), rounded to 8 bits.
"""

import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from gencodec.filters import load_frame_model
from gencodec.filters.export import PadCrop
from gencodec.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _ffmpeg_with_torch() -> str | None:
    candidates = [os.environ.get("GENCODEC_FFMPEG_TORCH"),
                  str(ROOT / "build" / "ffmpeg-torch" / "ffmpeg"), shutil.which("ffmpeg")]
    for exe in filter(None, candidates):
        if not os.access(exe, os.X_OK):
            continue
        out = subprocess.run([exe, "-hide_banner", "-h", "filter=dnn_processing"],
                             capture_output=True, text=True).stdout
        if "torch" in out:
            return exe
    return None


FFMPEG = _ffmpeg_with_torch()
pytestmark = pytest.mark.skipif(
    FFMPEG is None, reason="no FFmpeg with the LibTorch dnn back end "
    "(scripts/build_ffmpeg_torch.sh builds one; or set GENCODEC_FFMPEG_TORCH)")


def _frames(photo, h, w, n=2):
    """``n`` different RGB frames of h x w cut from the photo."""
    return np.stack([np.ascontiguousarray(photo[i:i + h, 2 * i:2 * i + w]) for i in range(n)])


def _dnn_processing(model_file, frames, tmp_path):
    n, h, w, _ = frames.shape
    src, dst = tmp_path / "in.rgb", tmp_path / "out.rgb"
    frames.tofile(src)
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-i", str(src),
           "-vf", f"format=rgb24,dnn_processing=dnn_backend=torch:model={model_file}",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", str(dst)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return np.fromfile(dst, np.uint8).reshape(n, h, w, 3)


def _eager(model_dir, frames):
    model = load_frame_model(model_dir).float().eval()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        y = torch.cat([PadCrop(model, model.multiple)(f[None]) for f in x])
    return (y.clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("which", ["compact_dir", "onestep_dir", "shipped default"])
def test_torchscript_export_runs_in_ffmpeg(which, request, photo, tmp_path):
    if which == "shipped default":  # the embedded default, its chroma low-pass included
        from gencodec.models import default_preprocessor_path

        model_dir = default_preprocessor_path()
    else:
        model_dir = request.getfixturevalue(which)
    exported = tmp_path / "filter.pt"
    assert main(["export", "--model", str(model_dir), "--format", "torchscript",
                 "-o", str(exported)]) == 0
    for h, w in ((64, 96), (61, 117)):  # a multiple of 8, and odd sizes (pad and crop)
        frames = _frames(photo, h, w)
        got = _dnn_processing(exported, frames, tmp_path).astype(int)
        want = _eager(model_dir, frames)
        diff = np.abs(got - want)
        # The same network in float32 through another libtorch call path: an output
        # that rounds differently is off by one code value, and such pixels are rare.
        assert diff.max() <= 1, (h, w, diff.max())
        assert (diff > 0).mean() < 1e-3, (h, w, (diff > 0).mean())
        assert np.abs(got - frames).mean() > 1.0  # the filter did change the frames


def _has_encoder(name: str) -> bool:
    out = subprocess.run([FFMPEG, "-hide_banner", "-h", f"encoder={name}"],
                         capture_output=True, text=True).stdout
    return f"Encoder {name}" in out


def _readme_dnn_lines() -> list[str]:
    """The README's two LibTorch lines (export, then ffmpeg), continuations joined."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    start = text.index("    gencodec export --model MODEL_DIR --format torchscript")
    lines = [line.strip() for line in text[start:].splitlines()[:2]]
    assert lines[1].startswith("ffmpeg -i in.mp4") and "dnn_backend=torch" in lines[1]
    return lines


def test_the_readme_command_line_runs_as_written(compact_dir, testsrc, write_clip,
                                                 tmp_path, monkeypatch):
    """The README's line, character for character (MODEL_DIR and the FFmpeg binary
    aside): an MP4 with H.264 and AAC in, libx265 with -crf, the audio copied."""
    import shlex

    if not _has_encoder("libx265"):
        x265_here = subprocess.run(["pkg-config", "--exists", "x265"]).returncode == 0 \
            if shutil.which("pkg-config") else False
        if x265_here:  # the build script links it when it can: this binary is stale
            pytest.fail(f"{FFMPEG} has no libx265 although pkg-config finds x265: rebuild "
                        "it with scripts/build_ffmpeg_torch.sh (make ffmpeg-torch)")
        pytest.skip("this FFmpeg has no libx265 (no libx265-dev when it was built)")
    export_line, ffmpeg_line = _readme_dnn_lines()
    monkeypatch.chdir(tmp_path)
    write_clip(tmp_path / "in.mp4", testsrc(3, 64, 96))
    argv = shlex.split(export_line.replace("MODEL_DIR", str(compact_dir)))
    assert argv[0] == "gencodec" and main(argv[1:]) == 0
    cmd = shlex.split(ffmpeg_line)
    run = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", *cmd[1:]],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with av.open("out.mp4") as out, av.open("in.mp4") as inp:
        assert out.streams.video[0].codec_context.name == "hevc"
        assert sum(1 for _ in out.decode(video=0)) == 3
        audio = [(p.pts, bytes(p)) for p in inp.demux(audio=0) if p.size]
    with av.open("out.mp4") as out:
        assert [(p.pts, bytes(p)) for p in out.demux(audio=0) if p.size] == audio  # copied


def test_export_help_example_filter_chain_on_yuv_from_stdin(compact_dir, photo, tmp_path,
                                                            capsys):
    """``export --help``'s -vf chain converts to RGB for the model and back, so it takes
    the yuv420p that most video decodes to (without format=rgb24 FFmpeg's dnn_processing
    refused it); ``-i -`` reads stdin (the fd protocol since FFmpeg 7.1)."""
    import re

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    chain = re.search(r'-vf "([^"]+)"', helptext).group(1)
    assert chain.startswith("format=rgb24,dnn_processing=dnn_backend=torch:model=filter.pt")
    exported = tmp_path / "filter.pt"
    assert main(["export", "--model", str(compact_dir), "--format", "torchscript",
                 "-o", str(exported)]) == 0
    h, w = 64, 96
    yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[:h, :w]), format="rgb24") \
        .reformat(format="yuv420p")
    raw = b"".join(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw].tobytes()
                   for p, (ph, pw) in zip(yuv.planes, [(h, w), (h // 2, w // 2), (h // 2, w // 2)]))
    dst = tmp_path / "out.yuv"
    run = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-i", "-",
                          "-vf", chain.replace("model=filter.pt", f"model={exported}"),
                          "-f", "rawvideo", "-y", str(dst)],
                         input=raw * 2, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = dst.read_bytes()
    assert len(out) == 2 * len(raw) and out != raw * 2  # yuv420p back, filtered
