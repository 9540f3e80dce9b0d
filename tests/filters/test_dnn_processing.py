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


@pytest.mark.parametrize("which", ["compact_dir", "onestep_dir"])
def test_torchscript_export_runs_in_ffmpeg(which, request, photo, tmp_path):
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
