"""Where the images of an evaluation come from.

``--images`` takes a folder (every image file in it, sorted by name; hidden files and
sub-folders are skipped) or
``skimage:NAME,NAME,...``: photos that ship inside scikit-image's wheel, so a clean
clone can run an evaluation with nothing downloaded and no third-party image committed.
``skimage:photos`` names the six of :data:`SKIMAGE_PHOTOS`. ``--crop N`` takes the
central NxN square of each image (quick runs, tests); an image smaller than that
is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from gencodec.errors import InputError
from gencodec.imageio import load_image

#: name -> how to get it from ``skimage.data`` (all photos, public domain or CC0).
SKIMAGE_PHOTOS = {
    "astronaut": lambda d: d.astronaut(),
    "coffee": lambda d: d.coffee(),
    "chelsea": lambda d: d.chelsea(),
    "rocket": lambda d: d.rocket(),
    "motorcycle_left": lambda d: d.stereo_motorcycle()[0],
    "hubble_deep_field": lambda d: d.hubble_deep_field(),
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm",
                  ".heic", ".heif"}


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """One image of a run: a name (unique in the run) and where to load it from.
    Picklable, so worker processes load images themselves."""

    name: str
    path: str | None = None        # a file, or
    skimage: str | None = None     # a key of SKIMAGE_PHOTOS
    crop: int | None = None        # central crop side

    def load(self) -> np.ndarray:
        if self.path is not None:
            image = load_image(self.path)
        else:
            try:
                from skimage import data
            except ImportError:
                raise InputError("skimage: images need scikit-image: pip install "
                                 "'gencodec[test]'") from None
            image = np.ascontiguousarray(SKIMAGE_PHOTOS[self.skimage](data))
        return center_crop(image, self.crop) if self.crop else image


    def size(self) -> tuple[int, int] | None:
        """(width, height) before cropping, from the file's header (as stored: the EXIF
        orientation may swap them); None when the file does not open (the run names
        the problem when it loads the image)."""
        if self.path is None:
            h, w = dataclasses.replace(self, crop=None).load().shape[:2]
            return w, h
        try:
            with Image.open(self.path) as im:
                return im.size
        except Exception:  # noqa: BLE001 - corrupt files are reported by load()
            return None


def center_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` square; an image smaller than that is refused."""
    h, w = image.shape[:2]
    if side > min(h, w):
        raise InputError(f"--crop {side} is larger than a {w}x{h} image")
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(image[top:top + side, left:left + side])


def check_crop(sources: list[ImageSource], crop: int) -> None:
    """Refuse a crop larger than an image before any work (it was silently cut down to
    the image, giving crops of other sizes than asked)."""
    for src in sources:
        size = src.size()
        if size is not None and crop > min(size):
            raise InputError(f"--crop {crop}: image {src.name} is {size[0]}x{size[1]}; use at "
                             f"most --crop {min(size)}, or leave the image out")


def find_images(spec: str, crop: int | None = None) -> tuple[list[ImageSource], str]:
    """``--images`` -> (sources, dataset name)."""
    if spec.startswith("skimage:"):
        names = [n for n in spec[len("skimage:"):].split(",") if n]
        if names == ["photos"]:
            names = list(SKIMAGE_PHOTOS)
        unknown = [n for n in names if n not in SKIMAGE_PHOTOS]
        if unknown or not names:
            raise InputError(f"unknown scikit-image photo(s) {', '.join(unknown) or '(none)'}; "
                             f"known: {', '.join(SKIMAGE_PHOTOS)} (or 'photos' for all)")
        sources = [ImageSource(n, skimage=n, crop=crop) for n in names]
        if crop:
            check_crop(sources, crop)
        return sources, "skimage"
    folder = Path(spec)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (or use skimage:NAME,...)")
    # hidden files are not images of the set: macOS's ._NAME.jpg resource forks, editors'
    # and gencodec's own .NAME.part files
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".") and p.is_file())
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    stems = [p.stem for p in files]
    names = stems if len(set(stems)) == len(stems) else [p.name for p in files]
    sources = [ImageSource(n, path=str(p), crop=crop) for n, p in zip(names, files)]
    if crop:
        check_crop(sources, crop)
    return sources, folder.resolve().name
