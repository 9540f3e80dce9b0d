"""Image input and output at the API edge.

Images are HxWx3 ``uint8`` RGB numpy arrays. :func:`load_image` turns any file Pillow
(and pillow-heif) can read into one, with these documented rules:

* alpha (RGBA, LA, P with transparency) is composited on **white**;
* grayscale and palette images become RGB;
* 16-bit grayscale and float images are scaled to 8 bits (rounded, not truncated);
  16-bit RGB(A) files are reduced to 8 bits by Pillow itself (high byte);
* the EXIF orientation is applied (an unreadable EXIF block is ignored);
* more than :data:`MAX_PIXELS` pixels (default 2**28 = 268 million,
  ``GENCODEC_MAX_PIXELS`` overrides) is refused before decoding;
* empty, unreadable, corrupt and truncated files raise :class:`InputError` naming the
  file (PNG files are also checked chunk by chunk, CRCs included, up to IEND).

Outputs are written atomically (:func:`atomic_output`): to a temporary file in the same
folder, moved into place only when complete, never over an existing file without
``force``; the new file gets the usual permissions (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from gencodec.errors import InputError, OutputExistsError

MAX_PIXELS = int(os.environ.get("GENCODEC_MAX_PIXELS", 1 << 28))

try:  # HEIF/HEIC input through pillow-heif
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

# We enforce MAX_PIXELS ourselves, before decoding, with a clear message.
Image.MAX_IMAGE_PIXELS = None


def check_pixels(width: int, height: int, what: str = "image") -> None:
    if width * height > MAX_PIXELS:
        raise InputError(f"{what} is {width}x{height} = {width * height} pixels, above the "
                         f"limit of {MAX_PIXELS} (set GENCODEC_MAX_PIXELS to raise it)")


def as_rgb_uint8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an array and return it as a C-contiguous HxWx3 uint8 RGB array.

    Accepts HxW (grayscale), HxWx1, HxWx3 and HxWx4 (composited on white); uint8,
    uint16 (scaled) and float in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{what}: expected an HxWx3 RGB array, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{what}: empty image (shape {a.shape})")
    check_pixels(a.shape[1], a.shape[0], what)
    if a.dtype == np.uint8:
        f = None
    elif a.dtype == np.uint16:
        f = a.astype(np.float64) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{what}: contains NaN or infinite values")
        f = np.clip(a.astype(np.float64), 0.0, 1.0)
    else:
        raise InputError(f"{what}: unsupported dtype {a.dtype} (use uint8, uint16 or float)")
    if f is not None:
        a = np.round(f * 255.0).astype(np.uint8)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float64) / 255.0
        a = np.round(a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":  # float images: [0, 1] or [0, 255]
            peak = 1.0 if float(np.nanmax(a)) <= 1.0 else 255.0
        else:  # 16-bit (and 32-bit integer holding 16-bit) samples
            peak = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return as_rgb_uint8(a / peak)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return as_rgb_uint8(np.asarray(im.convert("RGBA")))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return as_rgb_uint8(np.asarray(im))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array (see the module rules)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    try:
        with Image.open(p) as im:
            check_pixels(im.width, im.height, str(p))
            if im.format == "PNG":
                # Pillow decodes a PNG whose last bytes (zlib checksum, IEND) are cut
                # off without complaint; verify() walks every chunk and its CRC.
                im.verify()
        with Image.open(p) as im:
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block: keep the stored orientation
                pass
            return _pil_to_rgb(im)
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        raise InputError(f"{p}: not a recognised image file (or corrupt)") from None
    except MemoryError:
        raise InputError(f"{p}: not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise all sorts on corrupt data
        why = str(exc) or type(exc).__name__
        raise InputError(f"{p}: cannot decode image (corrupt or truncated?): {why}") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    The temporary name keeps the suffix, so libraries that pick a format by
    extension still work."""
    dest = Path(path)
    check_output(dest, force)
    parent = dest.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{dest.suffix}",
                               dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates the file 0600; give the output the permissions open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        if force:
            os.replace(tmp_path, dest)
        else:
            _move_no_clobber(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_output(path: str | os.PathLike, force: bool = False) -> None:
    """Raise unless ``path`` can be written: an existing file needs ``force``, a
    directory never is, and the folder must exist. Commands call this before long work
    so that they fail early; :func:`atomic_output` calls it again."""
    dest = Path(path)
    if dest.is_dir():
        raise InputError(f"{dest}: is a directory")
    if dest.exists() and not force:
        raise OutputExistsError(f"{dest}: exists (use --force to overwrite)")
    if not dest.parent.is_dir():
        raise InputError(f"{dest}: folder {dest.parent} does not exist")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_no_clobber(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest`` unless ``dest`` appeared meanwhile (a hard link fails
    if the name exists, where a rename would replace it)."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputExistsError(f"{dest}: exists (use --force to overwrite)") from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if dest.exists():
            raise OutputExistsError(f"{dest}: exists (use --force to overwrite)") from None
        os.replace(tmp, dest)
    # the finally clause of atomic_output removes the temporary name


def write_bytes_atomic(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    with atomic_output(path, force) as tmp:
        tmp.write_bytes(data)


def save_image(path: str | os.PathLike, image: np.ndarray, force: bool = False) -> None:
    """Write an RGB array to ``path`` (format from the extension), atomically."""
    image = as_rgb_uint8(image)
    with atomic_output(path, force) as tmp:
        try:
            Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(
                Path(path).suffix.lower()))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path}: cannot write this format: {exc}") from None
