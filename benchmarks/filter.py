"""Frames per second of the preprocessing filter, side by side with FFmpeg's classic
preprocessing filters on the same frames, in the same run.

    python benchmarks/filter.py                      # 720p and 1080p, CPU back ends
    python benchmarks/filter.py --json results/filter.json
    python benchmarks/filter.py --gpu-only           # the SD 2.1-size fp16 timing
    python benchmarks/filter.py --sizes 720p --models gencodec-preprocess-v1   # + v1

Rows: the classic filters through PyAV's libavfilter (gblur, hqdn3d, nlmeans) and,
when Debian's ffmpeg is installed, nlmeans through the ffmpeg program; then each model
on each back end: the embedded default model (models/gencodec-preprocess-v2, the
trained weights), then the compact architecture at the size `gencodec train rp` builds
by default (16 channels, 2 blocks, at 1/4 resolution), a larger one (32 x 4 at 1/2) and
a small SD look-alike (one-step VAE + UNet, filters.tiny.SD_LIKE_SMALL), these three
with random weights: the timings are real, the pictures are not. With a CUDA GPU,
the same models in fp16/bf16 and ONNX Runtime's CUDA EP, and an SD 2.1-size one-step
model (filters.tiny.SD21_SIZE, ~950 M parameters) at 1080p in fp16; the target there
is 10 fps.

Each figure is also printed as a ratio to gblur measured in the same run (the cheapest
classic filter), since absolute fps depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gencodec.filters.backends import OrtBackend, TorchBackend
from gencodec.filters.compact import CompactFilterNet
from gencodec.filters.model import load_frame_model
from gencodec.filters.runner import FrameRunner
from gencodec.filters.tiny import SD21_SIZE, SD_LIKE_SMALL, onestep_from_sizes
from gencodec.models import DEFAULT_PREPROCESSOR

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def make_frames(width: int, height: int, n: int) -> np.ndarray:
    """n natural frames (scikit-image photos, resized), slightly shifted each frame."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for i in range(n):
        im = Image.fromarray(photos[i % len(photos)]).resize((width + 8, height + 8),
                                                             Image.BICUBIC)
        a = np.asarray(im)[i % 8:i % 8 + height, i % 8:i % 8 + width]
        out.append(np.ascontiguousarray(a))
    return np.stack(out)


def timed(fn, frames: np.ndarray, min_seconds: float) -> float:
    """fps of ``fn`` on ``frames`` (one warm-up call on the first frame, then whole
    passes until ``min_seconds`` have gone by)."""
    fn(frames[:1])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while True:
        fn(frames)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        n += len(frames)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n / elapsed


def classic_rows(frames, size_name, min_seconds):
    from gencodec.filters.classic import ClassicFilter, classic_available

    rows = []
    for name in ("gblur", "hqdn3d", "nlmeans"):
        ok, why = classic_available(name)
        if not ok:
            rows.append({"size": size_name, "what": f"{name} (PyAV)", "fps": None, "note": why})
            continue
        f = ClassicFilter(name)
        fps = timed(lambda fr: f.apply_frames(list(fr)), frames, min_seconds)
        rows.append({"size": size_name, "what": f"{name} (PyAV, yuv444p)", "fps": fps,
                     "note": f.args})
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:  # Debian's build has the GPL filters (hqdn3d) that PyAV's wheel lacks
        h, w = frames.shape[1:3]
        raw = frames.tobytes()
        for flt in ("gblur=sigma=0.8", "hqdn3d=luma_spatial=4", "nlmeans=s=4:p=7:r=15"):
            def run(fr, flt=flt):
                subprocess.run([ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                                "-s", f"{w}x{h}", "-i", "-", "-vf", f"format=yuv444p,{flt}",
                                "-f", "null", "-"], input=raw[:len(fr) * h * w * 3],
                               check=True)

            fps = timed(run, frames, min_seconds)
            rows.append({"size": size_name, "what": f"{flt.split('=')[0]} (Debian ffmpeg "
                                                    "program, incl. start-up)",
                         "fps": fps, "note": flt})
    return rows


def model_rows(name, model, frames, size_name, backends, tile, batch, min_seconds):
    rows = []
    for backend_name, make in backends:
        try:
            backend = make(model)
        except Exception as exc:  # noqa: BLE001 - report and go on
            rows.append({"size": size_name, "what": f"{name} [{backend_name}]", "fps": None,
                         "note": f"unavailable: {exc}"})
            continue
        runner = FrameRunner(backend, tile=tile, batch=batch)
        fps = timed(runner, frames, min_seconds)
        rows.append({"size": size_name, "what": f"{name} [{backend_name}]", "fps": fps,
                     "note": f"tile {runner.tile}, overlap {runner.overlap}, batch {batch}"})
    return rows


def cpu_backends(onnx_cache: dict):
    def ort(model):
        key = id(model)
        if key not in onnx_cache:
            onnx_cache[key] = OrtBackend.from_model(model, "cpu")
        return onnx_cache[key]

    return [("torch cpu fp32", lambda m: TorchBackend(m, "cpu", "fp32")),
            ("onnxruntime cpu", ort)]


def cuda_backends():
    return [("torch cuda fp32", lambda m: TorchBackend(m, "cuda", "fp32")),
            ("torch cuda fp16", lambda m: TorchBackend(m, "cuda", "fp16")),
            ("torch cuda bf16", lambda m: TorchBackend(m, "cuda", "bf16")),
            ("onnxruntime cuda", lambda m: OrtBackend.from_model(m, "cuda"))]


def gpu_sd21_rows(min_seconds: float, tile: int, batch: int):
    """The SD 2.1-size one-step model at 1080p in fp16 (random weights)."""
    model = onestep_from_sizes(SD21_SIZE, prediction_type="v_prediction")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    model = model.to(memory_format=torch.channels_last)
    backend = TorchBackend(model, "cuda", "fp16")
    frames = make_frames(1920, 1080, 4)
    runner = FrameRunner(backend, tile=tile, batch=batch)
    fps = timed(runner, frames, min_seconds)
    mem = torch.cuda.max_memory_allocated() / 2 ** 30
    return [{"size": "1080p", "what": f"SD 2.1-size one-step ({params:.0f} M) [torch cuda fp16]",
             "fps": fps, "note": f"tile {runner.tile}, overlap {runner.overlap}, batch "
                                 f"{batch}, peak {mem:.1f} GiB; target >= 10 fps"}]


def print_table(rows):
    base = {r["size"]: r["fps"] for r in rows if r["what"].startswith("gblur (PyAV")
            and r["fps"]}
    print(f"{'size':<6} {'filter / model [back end]':<58} {'fps':>8} {'x gblur':>8}  note")
    for r in rows:
        fps = "-" if r["fps"] is None else f"{r['fps']:8.3g}"
        ratio = (f"{r['fps'] / base[r['size']]:8.3g}" if r["fps"] and base.get(r["size"])
                 else "-")
        print(f"{r['size']:<6} {r['what']:<58} {fps:>8} {ratio:>8}  {r['note']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--frames", type=int, default=2, help="frames per timed pass")
    p.add_argument("--min-seconds", type=float, default=2.0, help="time per figure")
    p.add_argument("--tile", type=int, default=None,
                   help="tile side (default: the runner's, whole frames for local models)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--no-sd-like", action="store_true", help="skip the SD look-alike")
    p.add_argument("--gpu-only", action="store_true", help="only the SD 2.1-size GPU timing")
    p.add_argument("--gpu-tile", type=int, default=1920,
                   help="tile for the SD 2.1-size model (1920: a 1080p frame whole)")
    p.add_argument("--gpu-batch", type=int, default=1)
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                   help="more frame models to time right after the default (registry ids, "
                        "folders), e.g. gencodec-preprocess-v1 to compare with it")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    rows: list[dict] = []
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'none'}", file=sys.stderr)
    if not args.gpu_only:
        models = [(f"{DEFAULT_PREPROCESSOR} (the default)",
                   load_frame_model(DEFAULT_PREPROCESSOR).eval()),
                  *[(spec, load_frame_model(spec).eval()) for spec in args.models],
                  ("compact 16x2 s4 (random)", CompactFilterNet(16, 2, 4).eval()),
                  ("compact 32x4 s2 (random)", CompactFilterNet(32, 4, 2).eval())]
        if not args.no_sd_like:
            models.append(("SD-like small one-step (random)",
                           onestep_from_sizes(SD_LIKE_SMALL).eval()))
        cache: dict = {}
        backends = cpu_backends(cache) + (cuda_backends() if cuda else [])
        for size_name in args.sizes:
            w, h = SIZES[size_name]
            frames = make_frames(w, h, args.frames)
            rows += classic_rows(frames, size_name, args.min_seconds)
            for name, model in models:
                print(f"timing {name} at {size_name} ...", file=sys.stderr)
                n = 1 if "SD" in name and not cuda else len(frames)
                rows += model_rows(name, model, frames[:n], size_name, backends,
                                   args.tile, args.batch, args.min_seconds)
    if cuda:
        rows += gpu_sd21_rows(args.min_seconds, args.gpu_tile, args.gpu_batch)
    else:
        rows.append({"size": "1080p", "what": "SD 2.1-size one-step [torch cuda fp16]",
                     "fps": None, "note": "no CUDA GPU on this machine: not measured"})
    print_table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
