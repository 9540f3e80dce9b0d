"""Training and validation images.

:class:`PhotoCrops` (OSDiff training, CiD distillation) draws each step's batch of
random crops of the photos in a folder as a pure function of ``(seed, step)``.

For rate-perception fine-tuning, :class:`PatchSampler` holds the JND-curated 256 x 256
patches of the training photos (:mod:`.jnd`) and draws each step's batch as a pure
function of ``(seed, step)``: a random patch, a random ``crop x crop`` window inside it
and a random flip per sample.

No sampler state has to be saved, a resumed run draws exactly the batches the
uninterrupted run would, and under DDP every rank draws the same global batch and
keeps its own slice (so any world size sees the same data).

Validation images are the held-out photos of rate-perception fine-tuning,
centre-cropped to a fixed side so that evaluation stays cheap during training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from gencodec.errors import InputError
from gencodec.eval.images import IMAGE_SUFFIXES, center_crop
from gencodec.imageio import load_image
from gencodec.train import jnd


def image_files(folder: str | Path) -> list[Path]:
    """The images in ``folder`` (sorted by name); InputError when there are none."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: no such folder of images")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


class PhotoCrops:
    """Each step's images: random ``crop`` x ``crop`` windows, randomly flipped, of the
    photos in a folder (box-downscaled to ``short_side`` first when it is > 0,
    :func:`gencodec.train.patches.downscale`), a pure function of ``(seed, step)``: a
    resumed run and every DDP rank draw the same global batch. The photos are held in
    memory, or with ``preload=False`` decoded when drawn (for large folders; a photo
    smaller than the crop is then refused when drawn); both draw the same crops."""

    def __init__(self, folder: str | Path, crop: int, seed: int = 0, short_side: int = 0,
                 preload: bool = True):
        self.files = image_files(folder)
        self.crop, self.seed, self.short_side = int(crop), int(seed), int(short_side)
        self.photos = [self._load(i) for i in range(len(self.files))] if preload else None

    def _load(self, i: int) -> np.ndarray:
        from gencodec.train.patches import downscale

        image = load_image(self.files[i])
        image = downscale(image, self.short_side) if self.short_side > 0 else image
        if min(image.shape[:2]) < self.crop:
            scaled = " (after scaling)" if self.short_side > 0 else ""
            raise InputError(f"{self.files[i]}: {image.shape[1]}x{image.shape[0]}{scaled} is "
                             f"smaller than the crop size {self.crop}")
        return np.ascontiguousarray(image)

    def photo(self, i: int) -> np.ndarray:
        """Photo ``i`` of :attr:`files`, scaled."""
        return self.photos[i] if self.photos is not None else self._load(i)

    def fingerprint(self) -> str:
        """sha256 over the (scaled) photos' pixels, for the resume check."""
        h = hashlib.sha256()
        for i in range(len(self.files)):
            im = self.photo(i)
            h.update(repr(im.shape).encode())
            h.update(im.tobytes())
        return h.hexdigest()[:16]

    def batch(self, step: int, count: int) -> torch.Tensor:
        """``count`` crops, N x 3 x crop x crop float32 in [0, 1]."""
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((count, self.crop, self.crop, 3), np.uint8)
        for k, i in enumerate(rng.integers(0, len(self.files), count)):
            im = self.photo(i)
            y = rng.integers(0, im.shape[0] - self.crop + 1)
            x = rng.integers(0, im.shape[1] - self.crop + 1)
            window = im[y:y + self.crop, x:x + self.crop]
            out[k] = window[:, ::-1] if rng.integers(0, 2) else window
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


class PatchSampler:
    """Seeded batches of crops from JND-selected patches (module docstring)."""

    def __init__(self, images: list[np.ndarray], *, patch: int = 256, crop: int = 128,
                 jnd_threshold: float = 0.8, candidates_per_image: int = 64, seed: int = 0):
        if crop > patch:
            raise InputError(f"crop {crop} is larger than the patch size {patch}")
        self.images, self.patch, self.crop, self.seed = images, patch, crop, seed
        self.patches = jnd.select_patches(images, size=patch, threshold=jnd_threshold,
                                          candidates_per_image=candidates_per_image, seed=seed)
        if not self.patches:
            raise InputError(f"no training patch: the images must be at least {patch} "
                             "pixels a side (and the JND threshold below 1)")

    @classmethod
    def from_folder(cls, folder: str | Path, **kw) -> "PatchSampler":
        return cls([load_image(p) for p in image_files(folder)], **kw)

    def fingerprint(self) -> str:
        """sha256 over the selected patches and the images' pixels (resume check)."""
        h = hashlib.sha256(repr([(p.image, p.y, p.x) for p in self.patches]).encode())
        for im in self.images:
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()[:16]

    def rng(self, step: int) -> np.random.Generator:
        """The generator of step ``step`` (also draws the step's quality)."""
        return np.random.default_rng([self.seed, step])

    def batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        """``size`` crops, N x 3 x crop x crop float32 in [0, 1]."""
        out = np.empty((size, self.crop, self.crop, 3), np.uint8)
        picks = rng.integers(0, len(self.patches), size)
        offsets = rng.integers(0, self.patch - self.crop + 1, (size, 2))
        flips = rng.integers(0, 2, size)
        for k, (i, (dy, dx), f) in enumerate(zip(picks, offsets, flips)):
            p = self.patches[i]
            y, x = p.y + dy, p.x + dx
            window = self.images[p.image][y:y + self.crop, x:x + self.crop]
            out[k] = window[:, ::-1] if f else window
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


def validation_images(folder: str | Path, side: int = 256) -> list[tuple[str, np.ndarray]]:
    """(name, centre crop of at most ``side`` pixels a side) of each image in ``folder``."""
    return [(p.stem, center_crop(load_image(p), side)) for p in image_files(folder)]
