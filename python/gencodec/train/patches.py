"""Photo patches for fitting and measuring: one definition of how a photo is scaled and
cropped, shared by the surrogate benchmark and rate-model fitting scripts and by the
exact-teacher check of the distillation.

Photos are box-downscaled to a short side of at most 512 pixels first: the Debian
wallpapers are 1-5 Mpixel and far smoother per pixel than photos at the sizes people
code (and the spectral model was estimated the same way, scripts/estimate_spectrum.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Longest short side a photo keeps before cropping.
SHORT_SIDE = 512
#: scikit-image photos that ship inside its wheel (no download).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                  "hubble_deep_field", "retina")


def downscale(image: np.ndarray, short_side: int = SHORT_SIDE) -> np.ndarray:
    """``image`` (H x W x 3 uint8) box-downscaled to a short side of at most
    ``short_side``; unchanged when already that small."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    scale = short_side / min(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BOX)
    return np.asarray(im)


def load_photo(path: Path, short_side: int = SHORT_SIDE) -> np.ndarray:
    """The RGB photo at ``path`` (via :func:`gencodec.imageio.load_image`), downscaled."""
    from gencodec.imageio import load_image

    return downscale(load_image(path), short_side)


def random_crops(photos: list[np.ndarray], size: int, count: int, seed: int) -> np.ndarray:
    """``count`` crops (N x size x size x 3 uint8), the photos taken in turn, at
    positions drawn from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        im = photos[i % len(photos)]
        y, x = rng.integers(0, im.shape[0] - size + 1), rng.integers(0, im.shape[1] - size + 1)
        out.append(im[y:y + size, x:x + size])
    return np.stack(out)


def photo_patches(folder: Path | None, count: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """``count`` random ``size x size`` crops of the PNG photos in ``folder`` (the
    scikit-image photos when ``folder`` is None or missing), each photo downscaled
    first; photos smaller than ``size`` are skipped."""
    if folder is not None and Path(folder).is_dir():
        photos = [load_photo(p) for p in sorted(Path(folder).glob("*.png"))]
    else:
        from skimage import data

        photos = [downscale(getattr(data, name)()) for name in SKIMAGE_PHOTOS]
    photos = [p for p in photos if min(p.shape[:2]) >= size]
    if not photos:
        raise ValueError(f"no photo of at least {size}x{size} pixels in {folder}")
    return random_crops(photos, size, count, seed)


def to_tensor(patches: np.ndarray):
    """N x H x W x 3 uint8 -> N x 3 x H x W float tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float() / 255.0
