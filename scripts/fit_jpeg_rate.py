#!/usr/bin/env python3
"""Fit diff-JPEG's rate model (:mod:`gencodec.codecs_ext.surrogates.jpeg_rate`) to the
size of the files the project's JPEG codec writes (Pillow, 4:2:0, optimised Huffman
tables), and write ``models/djpeg-rate/rate.safetensors``.

The model is ``bits = header(distinct symbols) + features . w`` with three weights
(on the Huffman-coded bits, the magnitude bits and a constant: byte stuffing and
padding, and what the surrogate's exact DCT does not reproduce of libjpeg's integer
one). ``w`` is the weighted least-squares fit of the real file sizes, each row divided by its real
size (so the fit minimises relative errors, as the benchmark scores them), over random
patches of the training photos at every quality in ``--qualities``. Never run it on
the held-out photos (/work/data/photos/val): the benchmark scores on those.

    python scripts/fit_jpeg_rate.py --photos /work/data/photos/train --force

Prints the fit's residuals; update models/djpeg-rate/README.md and the sha256 in
models/__init__.py after a refit (the script prints the digest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gencodec.codecs_ext import get_codec
from gencodec.codecs_ext.surrogates.jpeg import JpegSurrogate
from gencodec.codecs_ext.surrogates.jpeg_rate import FEATURES, JpegRateModel
from gencodec.train.patches import photo_patches, to_tensor

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "models" / "djpeg-rate" / "rate.safetensors"


def collect(patches: np.ndarray, qualities: list[int], batch: int = 8):
    """Features, header bits and real file bits of every patch at every quality."""
    codec = get_codec("jpeg")
    surrogate = JpegSurrogate(rounding="exact", rate_model=JpegRateModel())
    x_all = to_tensor(patches)
    feats, header, real = [], [], []
    jobs = [(q, i) for q in qualities for i in range(0, len(patches), batch)]
    for q, i in tqdm(jobs, desc=f"{patches.shape[1]}px patches", unit="batch"):
        with torch.no_grad():
            _, coefficients = surrogate.analyse(x_all[i:i + batch], float(q))
            f, h = surrogate.rate.features(*coefficients)
        feats.append(f.double().numpy())
        header.append(h.double().numpy())
        real += [8 * len(codec.payload(codec.encode(p, q))) for p in patches[i:i + batch]]
    return np.concatenate(feats), np.concatenate(header), np.array(real, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=Path("/work/data/photos/train"),
                    help="training photos (default %(default)s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--patches", type=int, default=32, help="patches per size")
    ap.add_argument("--qualities", type=int, nargs="+", default=list(range(5, 100, 5)))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    args = ap.parse_args()
    if not args.photos.is_dir():
        ap.error(f"{args.photos}: no such folder")
    if "val" in args.photos.resolve().parts:
        ap.error("refusing to fit on held-out photos")
    if args.out.exists() and not args.force:
        ap.error(f"{args.out} exists (use --force to replace it)")

    parts = [collect(photo_patches(args.photos, args.patches, s, args.seed + s), args.qualities)
             for s in args.sizes]
    feats, header, real = (np.concatenate(p) for p in zip(*parts))
    w, *_ = np.linalg.lstsq(feats / real[:, None], (real - header) / real, rcond=None)
    est = header + feats @ w
    uncal = header + feats @ JpegRateModel().weights.double().numpy()
    err, err0 = np.abs(np.log2(est / real)), np.abs(np.log2(uncal / real))
    print("weights:", dict(zip(FEATURES, np.round(w, 6).tolist())))
    print(f"{len(real)} samples: median |log2 est/real| {np.median(err):.4f} (uncalibrated "
          f"{np.median(err0):.4f}), p90 {np.percentile(err, 90):.4f}, max {err.max():.4f}")

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    meta = {"features": json.dumps(FEATURES), "photos": str(args.photos),
            "sizes": json.dumps(args.sizes), "patches_per_size": str(args.patches),
            "qualities": json.dumps(args.qualities), "seed": str(args.seed),
            "samples": str(len(real)), "train_median_abs_log2": f"{np.median(err):.5f}"}
    save_file({"weights": torch.tensor(w, dtype=torch.float32)}, str(tmp), metadata=meta)
    tmp.replace(args.out)
    print(f"wrote {args.out} sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
