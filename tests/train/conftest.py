"""Fixtures for the trainer tests: small photo folders and the stand-in surrogate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from standin import StandInSurrogate  # noqa: E402


def _write(folder: Path, images: dict[str, np.ndarray]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def photo_dirs(tmp_path_factory, skimage_photos):
    """(train, val) folders: 96x96 crops of the scikit-image photos (two each)."""
    root = tmp_path_factory.mktemp("photos")
    crops = {n: np.ascontiguousarray(p[100:196, 150:246]) for n, p in skimage_photos.items()}
    names = sorted(crops)
    train = _write(root / "train", {n: crops[n] for n in names[:2]})
    val = _write(root / "val", {n: crops[n] for n in names[2:]})
    return train, val


@pytest.fixture
def standin():
    return StandInSurrogate()


@pytest.fixture(scope="session")
def one_photo_dir(tmp_path_factory, skimage_photos):
    """A folder with one 64x64 photo crop: with patch = crop = 64 every training batch
    is that crop (flipped or not), so a few steps show the loss going down."""
    crop = np.ascontiguousarray(skimage_photos["astronaut"][100:164, 150:214])
    return _write(tmp_path_factory.mktemp("one") / "train", {"astronaut": crop})
