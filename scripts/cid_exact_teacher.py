#!/usr/bin/env python3
"""CiD distillation against an exact teacher (gencodec.train.exact_teacher).

The teacher is the embedded Gaussian spectral model with its spectrum made twice as
steep (pivot: the crop's lowest frequency); it runs in the model's orthonormal
transform (colour axes + DCT), which plays the VAE. The student is linear per
coefficient and starts as the identity; the fake score network starts as the teacher.
The script measures, on held-out photos:

* the radially averaged output power spectrum of the student before and after
  distillation against the teacher's and the photos' (mean |ln ratio| over bins);
* how far the fake score network is from the exact score of the student's output
  distribution (median |ln(P_psi / Q)| per coefficient; closed form, linear student);
* the PSNR of the student's output against its input as xi (Eq. 3) varies;
* the paper's anchor (z_h, Eq. 2) against SiD's (z_g): the step where it diverges.

It writes OUT/cid_exact_teacher.png (spectra, PSNR vs xi) and OUT/cid_exact_teacher.json.

    python scripts/cid_exact_teacher.py --out cid-exact          # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from gencodec.diffusion.spectral import GaussianSpectral
from gencodec.models import model_path
from gencodec.train.distill import CiDConfig
from gencodec.train.exact_teacher import run_exact_distillation, to_coefficients
from gencodec.train.patches import load_photo, random_crops

PHOTOS = Path("/work/data/photos")
SKIMAGE_TRAIN = ("astronaut", "coffee", "chelsea", "rocket")
SKIMAGE_HELD_OUT = ("motorcycle_left", "motorcycle_right")


def photos(folder: str | None, split: str) -> list[np.ndarray]:
    """Photos of a folder; without one, the data builder's split or skimage's."""
    root = Path(folder) if folder else PHOTOS / split
    if root.is_dir():
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if paths:
            return [load_photo(p) for p in paths]
    if folder:
        sys.exit(f"{folder}: no .png/.jpg photos")
    from skimage import data

    return [getattr(data, n)() for n in (SKIMAGE_TRAIN if split == "train" else SKIMAGE_HELD_OUT)]


def exact_config(xi: float, anchor: str, seed: int, batch: int) -> CiDConfig:
    """The options of the exact runs: SiD's t range, weighting and Adam betas; learning
    rates for log-variance parameters (Adam's eps far below their gradients, which
    vanish where the Wiener gain saturates); a short EMA (the EMA is not measured)."""
    return CiDConfig(xi=xi, anchor=anchor, global_batch=batch, lr_student=0.02, lr_fake=0.1,
                     adam_eps=1e-20, ema_halflife_kimg=1.0, seed=seed)


def plot(result, sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    names = ("axis 1 (luminance)", "axis 2", "axis 3")
    for c, ax in enumerate(axes[:3]):
        for key, style in (("teacher", "k-"), ("photos", "C0--"), ("before", "C1:"),
                           ("after", "C3-")):
            ax.loglog(result.freqs, getattr(result, key)[c], style, label=key, marker=".")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("radial frequency (cycles/pixel)")
        ax.set_title(f"colour {names[c]}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("coefficient variance")
    axes[0].legend()
    xs = [r["xi"] for r in sweep if r["diverged_at"] is None]
    axes[3].plot(xs, [r["psnr_after"] for r in sweep if r["diverged_at"] is None], "o-")
    axes[3].set_xlabel("xi (Eq. 3)")
    axes[3].set_ylabel("PSNR student output vs input (dB)")
    axes[3].set_title("held-out photos, anchor z_g")
    axes[3].grid(alpha=0.3)
    fig.suptitle("CiD with an exact Gaussian teacher (spectrum twice as steep)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def summary(r) -> dict:
    keys = ("log_distance_before", "log_distance_after", "psnr_before", "psnr_after",
            "fake_error_trained", "fake_error_settled", "fake_error_teacher",
            "fake_error_visible", "visible_fraction", "diverged_at")
    def plain(v):  # JSON has no NaN: a diverged run's figures are null
        return None if isinstance(v, float) and not np.isfinite(v) else v

    return {k: plain(getattr(r, k)) for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", help="folder of training photos (default: the data builder's "
                    "train split, else scikit-image photos)")
    ap.add_argument("--held-out", help="folder of held-out photos (default: the val split)")
    ap.add_argument("--size", type=int, default=32, help="crop side (default 32)")
    ap.add_argument("--crops", type=int, default=512, help="training crops (default 512)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--settle", type=int, default=500, help="fake-only steps before the "
                    "second fake-score check (default 500)")
    ap.add_argument("--factor", type=float, default=2.0, help="teacher steepness (default 2)")
    ap.add_argument("--xi", default="0,0.5,1,2", help="xi values of the PSNR sweep")
    ap.add_argument("--main-xi", type=float, default=1.0, help="xi of the plotted run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="cid-exact")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # elementwise work on small tensors: threads only contend
    model = GaussianSpectral.from_pretrained(model_path("gaussian-spectral"))
    train = to_coefficients(model, random_crops(photos(args.train, "train"), args.size,
                                                args.crops, args.seed + 1))
    held = to_coefficients(model, random_crops(photos(args.held_out, "val"), args.size,
                                               args.crops // 2, args.seed + 2))
    run = dict(steps=args.steps, factor=args.factor, settle_steps=args.settle, progress=True)

    main_run = run_exact_distillation(model, train, held,
                                      exact_config(args.main_xi, "student", args.seed, args.batch),
                                      **run)
    sweep = []
    for xi in [float(v) for v in args.xi.split(",")]:
        r = main_run if xi == args.main_xi else run_exact_distillation(
            model, train, held, exact_config(xi, "student", args.seed, args.batch),
            **{**run, "settle_steps": 0})
        sweep.append({"xi": xi, "anchor": "student", **summary(r)})
    paper = [{"xi": xi, "anchor": "input", **summary(run_exact_distillation(
        model, train, held, exact_config(xi, "input", args.seed, args.batch),
        **{**run, "settle_steps": 0}))} for xi in (0.0, args.main_xi)]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(main_run, sweep, out / "cid_exact_teacher.png")
    report = {"options": vars(args), "config": dataclasses.asdict(
                  exact_config(args.main_xi, "student", args.seed, args.batch)),
              "main": summary(main_run),
              "spectra": {k: np.asarray(getattr(main_run, k)).tolist()
                          for k in ("freqs", "teacher", "photos", "before", "after")},
              "xi_sweep": sweep, "paper_anchor": paper}
    (out / "cid_exact_teacher.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    m = main_run
    print(f"spectrum distance to the teacher (mean |ln|): {m.log_distance_before:.3f} -> "
          f"{m.log_distance_after:.3f}")
    print(f"fake score vs exact score of the student's output (median |ln P/Q|): "
          f"{m.fake_error_trained:.3f} after training, {m.fake_error_settled:.3f} settled "
          f"(teacher: {m.fake_error_teacher:.3f}); {m.fake_error_visible:.3f} over the "
          f"{100 * m.visible_fraction:.0f}% of coefficients with Q snr(t_min) >= 1")
    for r in sweep:
        print(f"anchor z_g xi={r['xi']:<4}: PSNR vs input {r['psnr_after']:.2f} dB, "
              f"spectrum distance {r['log_distance_after']:.3f}")
    for r in paper:
        state = f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None else \
            f"PSNR {r['psnr_after']:.2f} dB, distance {r['log_distance_after']:.3f}"
        print(f"anchor z_h xi={r['xi']:<4}: {state}")
    print(f"wrote {out / 'cid_exact_teacher.png'} and {out / 'cid_exact_teacher.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
