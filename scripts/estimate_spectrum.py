#!/usr/bin/env python3
"""Estimate the power spectrum of the embedded Gaussian spectral diffusion model.

Writes models/gaussian-spectral/{spectrum.safetensors,config.json}. The photos are
extracted at development time from Debian packages and never committed:

  libjxl-testdata   external/wesaturate/500px/*_srgb8.png (CC0), jxl/flower/flower.png
  mate-backgrounds  nature/*.jpg (GPL-2+)

Only second-order statistics leave this script: the colour mean, the colour principal
axes, the DC standard deviation and the radially averaged power of the DCT
coefficients in log-spaced frequency bins (a few hundred numbers).

    python scripts/estimate_spectrum.py --fetch            # apt-get download + dpkg -x
    python scripts/estimate_spectrum.py --photos DIR ...   # or any folders of photos
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft

PACKAGES = ("libjxl-testdata", "mate-backgrounds")
GLOBS = ("usr/share/libjxl-testdata/external/wesaturate/500px/*_srgb8.png",
         "usr/share/libjxl-testdata/jxl/flower/flower.png",
         "usr/share/backgrounds/mate/nature/*.jpg")
SHORT_SIDE = 512
CROP_SIZES = (64, 128, 256, 512)
CROPS_PER_SIZE = 6
NUM_BINS = 48
SEED = 20250101
OUT = Path(__file__).resolve().parents[1] / "models" / "gaussian-spectral"


def fetch(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=dest, check=True)
    for deb in dest.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(dest / "x")], check=True)
    return sorted(p for g in GLOBS for p in (dest / "x").glob(g))


def load(path: Path) -> np.ndarray:
    """A photo in [-1, 1], downscaled (box filter) to a short side of at most
    SHORT_SIDE: the wallpapers are 1-5 Mpixel and far smoother per pixel than photos
    at the sizes people code (Kodak, the scikit-image photos: 512 pixels)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = SHORT_SIDE / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BOX)
        return np.asarray(im, np.float64) / 127.5 - 1.0


def estimate(photos: list[Path]) -> tuple[dict[str, np.ndarray], dict]:
    rng = np.random.default_rng(SEED)
    photos = sorted(photos, key=lambda p: p.name)  # the same crops whatever the folders
    images = [load(p) for p in photos]
    pixels = np.concatenate([im.reshape(-1, 3)[rng.integers(0, im.shape[0] * im.shape[1], 20000)]
                             for im in images])
    mean = pixels.mean(0)
    _, vecs = np.linalg.eigh(np.cov((pixels - mean).T))
    basis = vecs[:, ::-1].T.copy()            # rows: principal axes, largest variance first
    basis *= np.sign(basis.sum(1, keepdims=True))  # luminance-like axis positive

    edges = np.geomspace(1 / 2048, np.sqrt(0.5) + 1e-9, NUM_BINS + 1)
    power = np.zeros((3, NUM_BINS))
    count = np.zeros(NUM_BINS)
    dc_means = []
    for im in images:
        y = np.einsum("dc,hwc->dhw", basis, im - mean)
        h, w = y.shape[1:]
        for n in CROP_SIZES:
            if n > min(h, w):
                continue
            for _ in range(CROPS_PER_SIZE):
                r, c = rng.integers(0, h - n + 1), rng.integers(0, w - n + 1)
                crop = y[:, r:r + n, c:c + n]
                if n == 256:
                    dc_means.append(crop.mean(axis=(1, 2)))
                coef = fft.dctn(crop, axes=(1, 2), norm="ortho") ** 2
                k = np.arange(n) / (2.0 * n)
                f = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2).ravel()
                b = np.searchsorted(edges, f, side="right") - 1
                keep = (f > 0) & (b >= 0) & (b < NUM_BINS)
                count += np.bincount(b[keep], minlength=NUM_BINS)
                for ch in range(3):
                    power[ch] += np.bincount(b[keep], weights=coef[ch].ravel()[keep],
                                             minlength=NUM_BINS)
    filled = count > 0
    centres = np.sqrt(edges[:-1] * edges[1:])[filled]
    log_power = np.log(power[:, filled] / count[filled])
    tensors = {
        "freqs": centres.astype(np.float32),
        "log_power": log_power.astype(np.float32),
        "colour_basis": basis.astype(np.float32),
        "colour_mean": mean.astype(np.float32),
        "dc_std": np.std(np.array(dc_means), axis=0).astype(np.float32),
    }
    config = {
        "architecture": "gaussian-spectral",
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "num_train_timesteps": 1000,
        "pixel_range": [-1.0, 1.0],
        "estimated_from": [p.name for p in photos],
        "short_side": SHORT_SIDE,
        "crop_sizes": list(CROP_SIZES),
        "crops_per_size": CROPS_PER_SIZE,
        "seed": SEED,
    }
    return tensors, config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--fetch", action="store_true", help="download the Debian packages")
    src.add_argument("--photos", nargs="+", type=Path, help="folders or files of photos")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.fetch:
        photos = fetch(Path(tempfile.mkdtemp(prefix="gencodec-photos-")))
    else:
        photos = sorted(q for p in args.photos for q in ([p] if p.is_file() else
                        [f for f in p.rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg")]))
    if not photos:
        print("no photos found", file=sys.stderr)
        return 1
    from safetensors.numpy import save_file

    tensors, config = estimate(photos)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              str(args.out / "spectrum.safetensors"))
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{len(photos)} photos -> {args.out}")
    for k, v in tensors.items():
        print(f"  {k}: {np.array2string(v.ravel()[:6], precision=4)}{' ...' if v.size > 6 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
