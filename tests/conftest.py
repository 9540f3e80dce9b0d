"""Shared fixtures: the scikit-image photos (loaded once per session) and small helpers.

Fixture names are specific (``skimage_photos``...) because this conftest also applies
to the sub-folders other parts of the project own."""

from __future__ import annotations

import numpy as np
import pytest

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _half(a: np.ndarray) -> np.ndarray:
    """2x2 box downscale (keeps the photo's content, quarter of the pixels)."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    f = a[:h, :w].astype(np.float64).reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return np.round(f).astype(np.uint8)


@pytest.fixture(scope="session")
def psnr():
    """PSNR in dB over all channels of two uint8 images (peak 255)."""
    return _psnr


@pytest.fixture(scope="session")
def skimage_photos() -> dict[str, np.ndarray]:
    """The four scikit-image photos at full size (HxWx3 uint8), read-only."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (the test extra) is needed")
    photos = {}
    for name in PHOTO_NAMES:
        a = np.ascontiguousarray(getattr(data, name)())
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        a.setflags(write=False)
        photos[name] = a
    return photos


@pytest.fixture(scope="session")
def half_photos(skimage_photos) -> dict[str, np.ndarray]:
    """The four photos downscaled 2x (faster for the slow codecs)."""
    out = {}
    for name, a in skimage_photos.items():
        h = _half(a)
        h.setflags(write=False)
        out[name] = h
    return out


@pytest.fixture(scope="session")
def astronaut_crop(skimage_photos) -> np.ndarray:
    """A 128x128 crop of astronaut (face and suit: texture and flat areas)."""
    a = np.ascontiguousarray(_half(skimage_photos["astronaut"])[10:138, 60:188])
    a.setflags(write=False)
    return a


@pytest.fixture(scope="session")
def tiny_image() -> np.ndarray:
    """A 16x16 smooth colour image (small streams for byte-by-byte damage tests)."""
    y, x = np.mgrid[0:16, 0:16]
    a = np.stack([x * 15, y * 15, (x + y) * 7], axis=-1).astype(np.uint8)
    a.setflags(write=False)
    return a


@pytest.fixture(scope="session")
def onestep_dir(tmp_path_factory):
    """A tiny random one-step diffusion model (SD layout) saved to a folder."""
    pytest.importorskip("diffusers", reason="one-step models need gencodec[diffusion]")
    from gencodec.filters.tiny import tiny_onestep

    d = tmp_path_factory.mktemp("onestep")
    tiny_onestep(seed=2).save_pretrained(d)
    return d
