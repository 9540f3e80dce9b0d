"""Differentiable codec surrogates against the real encoders, measured in the same run.

For each surrogate (``gencodec.codecs_ext.surrogates.SURROGATES``) over photo patches
and the codec's settings (JPEG qualities 10..90, BPG QPs 22..47):

- bits: Spearman rank correlation of estimated vs real file bits, and the median and
  90th percentile of |log2(estimated / real)|;
- reconstruction: mean PSNR of the surrogate's output and of the real decoded image
  (both against the original patch), and their difference;
- speed: the surrogate's forward + backward throughput (and, where a surrogate has a
  native op, native vs its PyTorch reference, forward and backward);
- a scatter plot of estimated vs real bits, ``OUT/surrogate_<name>.png``, and all
  figures in ``OUT/surrogate.json``.

Patches come from ``--photos`` (default /work/data/photos/val, the held-out photos:
evaluation only, no surrogate is fitted on them), else from scikit-image's photos.

    python benchmarks/surrogate.py                          # every surrogate, 24 patches
    python benchmarks/surrogate.py --surrogates jpeg --patches 32 --out /tmp/surrogate

Each surrogate is one :class:`Case` in :data:`CASES` (name -> builder): its settings,
the real codec (encode -> bits, decoded image) and the surrogate module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from gencodec.train.patches import photo_patches, to_tensor

DEFAULT_PHOTOS = Path("/work/data/photos/val")


def fwd_bwd_throughput(module: torch.nn.Module, x: torch.Tensor, setting: float,
                       repeats: int = 3) -> dict[str, float]:
    """Megapixels per second of the surrogate, forward alone and forward + backward
    (of ``bits.sum() + mse``), median of ``repeats`` after a warm-up."""

    def fwd():
        with torch.no_grad():
            module(x, setting)

    def fwd_bwd():
        xg = x.clone().requires_grad_()
        x_hat, bits = module(xg, setting)
        (bits.sum() + (x_hat - xg).square().mean()).backward()

    return throughput(fwd, fwd_bwd, x.shape[0] * x.shape[2] * x.shape[3] / 1e6, repeats)


def throughput(fwd, fwd_bwd, mpix: float, repeats: int = 3) -> dict[str, float]:
    """Megapixels per second of ``fwd()`` and ``fwd_bwd()``, median of ``repeats``
    after a warm-up."""
    out = {}
    for name, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[f"{name} Mpix/s"] = mpix / statistics.median(times)
    return out


def intra_op_throughput(x: torch.Tensor, qp: float, backend: str,
                        repeats: int = 3) -> dict[str, float]:
    """Megapixels per second of the closed-loop intra op alone (what ``native/dbpg``
    implements) on the luma planes of ``x`` with the surrogate's default settings,
    forward and forward + backward (of ``recon.sum() + yhat.sum()``)."""
    from gencodec.codecs_ext.surrogates import bpg, bpg_intra

    luma = bpg.rgb_to_ycbcr(x * 255.0)[:, 0].contiguous()
    qstep = bpg_intra.qstep_of(bpg.coded_qp(torch.full((luma.shape[0],), float(qp),
                                                       dtype=luma.dtype)))
    kw = dict(temperature=1.0, terms=bpg.DEFAULT_TERMS, ref_grad=bpg.DEFAULT_REF_GRAD,
              backend=backend)

    def fwd():
        with torch.no_grad():
            bpg_intra.intra_code(luma, qstep, 16, **kw)

    def fwd_bwd():
        planes = luma.clone().requires_grad_()
        recon, yhat = bpg_intra.intra_code(planes, qstep, 16, **kw)
        (recon.sum() + yhat.sum()).backward()

    return throughput(fwd, fwd_bwd, luma.numel() / 1e6, repeats)


@dataclasses.dataclass
class Case:
    """One surrogate against its real codec."""

    name: str  # the name in SURROGATES (and CODECS)
    setting_name: str  # "quality", "QP"
    settings: tuple[float, ...]
    real: Callable[[np.ndarray, float], tuple[int, np.ndarray]]  # -> (bits, decoded)
    surrogate: torch.nn.Module
    #: speed figures on a batch ``x`` at a setting; a surrogate with a native op
    #: reports native vs its PyTorch reference here.
    speed: Callable[[torch.Tensor, float], dict[str, float]] | None = None

    def measure_speed(self, x: torch.Tensor) -> dict[str, float]:
        setting = self.settings[len(self.settings) // 2]
        if self.speed is not None:
            return self.speed(x, setting)
        return fwd_bwd_throughput(self.surrogate, x, setting)


def jpeg_case() -> Case:
    """diff-JPEG against the project's JPEG codec (Pillow, 4:2:0, optimised tables)."""
    from gencodec.codecs_ext import get_codec
    from gencodec.codecs_ext.surrogates import get_surrogate

    codec = get_codec("jpeg")

    def real(image: np.ndarray, quality: float) -> tuple[int, np.ndarray]:
        stream = codec.encode(image, int(quality))
        return 8 * len(codec.payload(stream)), codec.decode(stream)

    return Case("jpeg", "quality", tuple(range(10, 91, 10)), real, get_surrogate("jpeg"))


def bpg_case() -> Case:
    """diff-BPG against the project's bpg codec (HEVC intra by x265, 4:2:0); speed: the
    native op against its PyTorch reference, both whole surrogates and the intra op
    alone (luma, 16x16 blocks), in this run."""
    from gencodec.codecs_ext import get_codec
    from gencodec.codecs_ext.surrogates import get_surrogate

    codec = get_codec("bpg")

    def real(image: np.ndarray, qp: float) -> tuple[int, np.ndarray]:
        stream = codec.encode(image, int(qp))
        return 8 * len(codec.payload(stream)), codec.decode(stream)

    def speed(x: torch.Tensor, qp: float) -> dict[str, float]:
        out = {}
        for backend in ("torch", "native"):
            # median of 3: one short run swings with the load of a shared machine
            figures = fwd_bwd_throughput(get_surrogate("bpg", backend=backend), x, qp, repeats=3)
            out.update({f"{backend} {k}": v for k, v in figures.items()})
        for k in ("fwd", "fwd+bwd"):
            out[f"native/torch {k}"] = out[f"native {k} Mpix/s"] / out[f"torch {k} Mpix/s"]
        # the op alone: the surrogates share the rate model and the colour path
        op = {b: intra_op_throughput(x, qp, b) for b in ("torch", "native")}
        for k in ("fwd", "fwd+bwd"):
            out[f"op native/torch {k}"] = op["native"][f"{k} Mpix/s"] / op["torch"][f"{k} Mpix/s"]
        return out

    return Case("bpg", "QP", tuple(range(22, 48, 5)), real, get_surrogate("bpg"), speed)


#: name -> builder of its :class:`Case`.
CASES: dict[str, Callable[[], Case]] = {"jpeg": jpeg_case, "bpg": bpg_case}


def evaluate(case: Case, patches: np.ndarray, batch: int = 8) -> dict:
    """Estimated and real bits and PSNRs of every patch at every setting."""
    from gencodec.eval.metrics import psnr

    rows = []
    x_all = to_tensor(patches)
    jobs = [(s, i) for s in case.settings for i in range(0, len(patches), batch)]
    for setting, i in tqdm(jobs, desc=f"{case.name}: surrogate vs real", unit="batch"):
        x = x_all[i:i + batch]
        with torch.no_grad():
            x_hat, bits = case.surrogate(x, setting)
        x_hat = (x_hat.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.float64)
        for j, image in enumerate(patches[i:i + batch]):
            real_bits, decoded = case.real(image, setting)
            rows.append({"setting": setting, "patch": i + j, "est_bits": float(bits[j]),
                         "real_bits": real_bits, "psnr_surrogate": psnr(image, x_hat[j]),
                         "psnr_real": psnr(image, decoded)})
    est = np.array([r["est_bits"] for r in rows])
    real = np.array([r["real_bits"] for r in rows], dtype=np.float64)
    err = np.abs(np.log2(est / real))
    ps, pr = (np.array([r[k] for r in rows]) for k in ("psnr_surrogate", "psnr_real"))
    per_setting = {
        str(s): {"median |log2|": float(np.median(err[[r["setting"] == s for r in rows]])),
                 "psnr_surrogate": float(ps[[r["setting"] == s for r in rows]].mean()),
                 "psnr_real": float(pr[[r["setting"] == s for r in rows]].mean())}
        for s in case.settings}
    return {
        "patches": len(patches), "settings": list(case.settings),
        "spearman": float(stats.spearmanr(est, real).statistic),
        "median |log2 est/real|": float(np.median(err)),
        "p90 |log2 est/real|": float(np.percentile(err, 90)),
        "mean est/real": float(np.mean(est / real)),
        "mean PSNR surrogate": float(ps.mean()), "mean PSNR real": float(pr.mean()),
        "PSNR difference": float(ps.mean() - pr.mean()),
        "per_setting": per_setting, "rows": rows,
    }


def scatter_plot(case: Case, result: dict, path: Path) -> None:
    """Estimated vs real bits per patch and setting (log-log), coloured by setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    real = np.array([r["real_bits"] for r in rows]) / 1000
    est = np.array([r["est_bits"] for r in rows]) / 1000
    fig, ax = plt.subplots(figsize=(6, 5.5))
    sc = ax.scatter(real, est, c=[r["setting"] for r in rows], cmap="viridis", s=12)
    lo, hi = min(real.min(), est.min()) * 0.9, max(real.max(), est.max()) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="estimate = real")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="real file (kbit)", ylabel="surrogate estimate (kbit)",
           title=f"{case.name}: Spearman {result['spearman']:.3f}, median |log2| "
                 f"{result['median |log2 est/real|']:.3f}")
    fig.colorbar(sc, ax=ax, label=case.setting_name)
    ax.legend(loc="upper left")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def print_table(results: dict[str, dict]) -> None:
    cols = ("spearman", "median |log2 est/real|", "p90 |log2 est/real|", "mean PSNR surrogate",
            "mean PSNR real", "PSNR difference")
    print(f"\n{'surrogate':10s}" + "".join(f"{c:>24s}" for c in cols))
    for name, r in results.items():
        print(f"{name:10s}" + "".join(f"{r[c]:24.4f}" for c in cols))
    print("\nspeed (same run, same machine):")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in r["speed"].items()))
    print("\nper setting (median |log2 est/real|, PSNR surrogate / real):")
    for name, r in results.items():
        for s, v in r["per_setting"].items():
            print(f"  {name} {s:>4s}: {v['median |log2|']:.4f}  "
                  f"{v['psnr_surrogate']:.2f} / {v['psnr_real']:.2f} dB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--surrogates", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS,
                    help="held-out photos (default %(default)s; scikit-image's if missing)")
    ap.add_argument("--patches", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-batch", type=int, default=4, help="patches per timed call")
    ap.add_argument("--out", type=Path, default=Path("benchmark-surrogate"),
                    help="folder for the JSON and the scatter plots (default %(default)s)")
    args = ap.parse_args()
    if args.patches < 1 or args.size < 16:
        ap.error("need at least one patch of at least 16x16")
    torch.set_num_threads(os.cpu_count() or 1)
    source = args.photos if args.photos.is_dir() else "scikit-image photos"
    patches = photo_patches(args.photos, args.patches, args.size, args.seed)
    print(f"{len(patches)} patches of {args.size}x{args.size} from {source}, "
          f"{torch.get_num_threads()} threads")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.surrogates:
        case = CASES[name]()
        result = evaluate(case, patches)
        result["speed"] = case.measure_speed(to_tensor(patches[:args.speed_batch]))
        scatter_plot(case, result, args.out / f"surrogate_{name}.png")
        results[name] = result
    print_table(results)
    summary = {"photos": str(source), "patch_size": args.size, "results": results}
    tmp = args.out / "surrogate.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, args.out / "surrogate.json")
    print(f"\nwrote {args.out / 'surrogate.json'} and the scatter plots")


if __name__ == "__main__":
    main()
