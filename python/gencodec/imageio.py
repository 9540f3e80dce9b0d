"""Image input and output at the API edge.

Images are HxWx3 ``uint8`` RGB numpy arrays. :func:`load_image` turns any file Pillow
(and pillow-heif) can read into one, with these documented rules:

* alpha (RGBA, LA, P with transparency) is composited on **white**;
* grayscale and palette images become RGB;
* 16-bit grayscale and float images are scaled to 8 bits (rounded, not truncated);
  float images are read as [0, 1] when no sample exceeds 2 (overshoot is clipped),
  otherwise as [0, 255];
  16-bit RGB(A) files are reduced to 8 bits by Pillow itself (high byte);
* the EXIF orientation is applied (an unreadable EXIF block is ignored);
* colours tagged with an ICC profile other than sRGB (Display P3, Adobe RGB, a CMYK
  press profile) are converted to sRGB, as browsers show them (relative colorimetric);
  untagged images are taken as sRGB, and a broken profile is ignored;
* animations (GIF, APNG, animated WebP and AVIF) are refused rather than cut to their
  first frame; multi-picture files (MPO, multi-page TIFF, HEIF) give the primary image;
* more than :data:`MAX_PIXELS` pixels (default 2**28 = 268 million,
  ``GENCODEC_MAX_PIXELS`` overrides) is refused before decoding;
* empty, unreadable, corrupt and truncated files, folders, FIFOs and devices raise
  :class:`InputError` naming the file (PNG files are also checked chunk by chunk, CRCs
  included, up to IEND).

Outputs are written atomically (:func:`atomic_output`): to a temporary file in the same
folder, moved into place only when complete, never over an existing file without
``force`` and never over one of the command's inputs; the new file gets the usual
permissions (0666 less the umask). A symbolic link is always written through: the file
it names (at the end of a chain of links) is created, or replaced with ``force``, and
the link stays, whether or not that file existed (a dangling link is not replaced by a
file). An existing character device or FIFO (``/dev/null``, a named pipe) is written
straight into, not replaced.

``-`` means standard input (:func:`load_image`, :func:`read_input`) and standard
output (:func:`atomic_output`), as in FFmpeg. An output that *is* standard output
(``-``, ``/dev/stdout``, or the file the shell redirected it to) is written there once
complete, with no ``force`` needed: the shell has already opened it. Image outputs
without an extension there are PNG (:func:`image_format`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import stat
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageCms, ImageOps

from gencodec.errors import GencodecError, InputError, OutputExistsError

#: The file name that means standard input or standard output, as in FFmpeg.
STDIO = "-"
#: How messages name standard input.
STDIN_NAME = "<stdin>"

#: Formats whose multi-frame files are animations (refused), as Pillow names them.
ANIMATION_FORMATS = ("GIF", "PNG", "WEBP", "AVIF")

DEFAULT_MAX_PIXELS = 1 << 28

#: Float images whose largest sample is at most this are read as [0, 1] (the overshoot
#: that resampling and sharpening leave, 1.02 say, is clipped), larger ones as [0, 255].
FLOAT_UNIT_RANGE_MAX = 2.0


def max_pixels_from_environment() -> int:
    """``GENCODEC_MAX_PIXELS`` as a pixel count ("1e9" and "268_435_456" are fine too);
    unset gives :data:`DEFAULT_MAX_PIXELS`, and so does a value that is not a positive
    whole number, with a warning (this runs at import: an exception here would break
    every command, ``--help`` included)."""
    raw = os.environ.get("GENCODEC_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = float("nan")
    if not (value >= 1 and math.isfinite(value) and value.is_integer()):
        warnings.warn(f"GENCODEC_MAX_PIXELS={raw!r} is not a positive whole number; using "
                      f"the default {DEFAULT_MAX_PIXELS}", stacklevel=2)
        return DEFAULT_MAX_PIXELS
    return int(value)


MAX_PIXELS = max_pixels_from_environment()

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
    uint16 (scaled) and float in [0, 1]. A ``PIL.Image`` is converted by its mode as
    :func:`load_image` does (palette, CMYK, YCbCr, LA, 16-bit, ICC profile), not read
    as raw samples (palette indices as grey, CMYK's K as alpha)."""
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
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


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert an RGB(A), CMYK or grayscale image tagged with a non-sRGB ICC profile to
    sRGB (RGB, or RGBA keeping the alpha); anything else is returned as it is."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower():
            return im  # already sRGB: spare the rounding of a needless transform
        return ImageCms.profileToProfile(
            im, source, ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGBA" if im.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im  # a profile lcms cannot use (or one for another colour space)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":  # float images: [0, 1] (overshoot up to 2 clipped) or [0, 255]
            peak = 1.0 if float(np.nanmax(a)) <= FLOAT_UNIT_RANGE_MAX else 255.0
        else:  # 16-bit (and 32-bit integer holding 16-bit) samples
            peak = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return as_rgb_uint8(a / peak)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "LA":
        im = im.convert("RGBA")
    im = _to_srgb(im)
    if im.mode in ("RGBA", "PA", "RGBa", "La"):
        return as_rgb_uint8(np.asarray(im.convert("RGBA")))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return as_rgb_uint8(np.asarray(im))


def check_input(path: str | os.PathLike) -> Path:
    """Raise :class:`InputError` unless ``path`` is a regular file this process can read
    (not a folder, FIFO or device); return it as a Path."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{p}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{p}: not a regular file (a FIFO, socket or device); give a file, "
                         f"or {STDIO} to read standard input")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot read: permission denied")
    return p


def read_input(path: str | os.PathLike) -> bytes:
    """The bytes of an input file (:func:`check_input`), or of standard input for ``-``."""
    if str(path) == STDIO:
        return sys.stdin.buffer.read()
    return check_input(path).read_bytes()


def input_name(path: str | os.PathLike) -> str:
    """How messages name an input: the path, or ``<stdin>`` for ``-``."""
    return STDIN_NAME if str(path) == STDIO else str(path)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (or standard input, for ``-``) as an HxWx3 uint8 RGB array
    (see the module rules)."""
    if str(path) == STDIO:
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError(f"{STDIN_NAME}: empty input")
        return _decode_image(data, STDIN_NAME)
    p = check_input(path)
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    return _decode_image(p, str(p))


def _decode_image(source: Path | bytes, name: str) -> np.ndarray:
    """Decode a file, or the bytes read from standard input, named ``name`` in errors."""
    def opened():
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)

    try:
        with opened() as im:
            check_pixels(im.width, im.height, name)
            if im.format in ANIMATION_FORMATS and getattr(im, "is_animated", False):
                raise InputError(f"{name}: animated {im.format} ({im.n_frames} frames); "
                                 "gencodec codes still images: extract one frame first")
            if im.format == "PNG":
                # Pillow decodes a PNG whose last bytes (zlib checksum, IEND) are cut
                # off without complaint; verify() walks every chunk and its CRC.
                im.verify()
        with opened() as im:
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block: keep the stored orientation
                pass
            return _pil_to_rgb(im)
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        head = source[:4] if isinstance(source, bytes) else _head(source, 4)
        if head == b"GNCD":  # the container's magic
            raise InputError(f"{name}: is a gencodec stream, not an image ('gencodec decode' "
                             "reads it)") from None
        raise InputError(f"{name}: not a recognised image file (or corrupt)") from None
    except MemoryError:
        raise InputError(f"{name}: not enough memory to decode this image") from None
    except PermissionError:
        raise InputError(f"{name}: cannot read: permission denied") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise all sorts on corrupt data
        why = str(exc) or type(exc).__name__
        raise InputError(f"{name}: cannot decode image (corrupt or truncated?): {why}") from None


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    The temporary name keeps the suffix, so libraries that pick a format by
    extension still work. An existing character device or FIFO is yielded itself
    (there is nothing to replace, and renaming over ``/dev/null`` would destroy it);
    standard output (:func:`is_stdout`) gets the complete file once it is written; a
    symbolic link is written through (the file it names is created or replaced).
    Failures to write (a full disk, a read-only file system) name ``path``."""
    check_output(path, force)
    if is_stdout(path):
        with _to_stdout(Path(path).suffix) as tmp:
            yield tmp
        return
    if _is_stream_device(Path(path)):
        yield Path(path)
        return
    dest = _through_links(Path(path))
    parent = dest.parent
    try:
        # the name is cut so that it stays within NAME_MAX (255 bytes) for long outputs
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem[:40]}.",
                                   suffix=f".part{dest.suffix[:16]}", dir=parent)
    except OSError as exc:
        raise InputError(f"{dest}: cannot create a file in {parent}: "
                         f"{exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates the file 0600; give the output the permissions open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            yield tmp_path
        except OSError as exc:
            if not _failed_to_store(exc, tmp_path):
                raise  # about something else (an input, an encoder): its own words
            raise _write_error(dest, exc) from exc
        try:
            if force:
                os.replace(tmp_path, dest)
            else:
                _move_no_clobber(tmp_path, dest)
        except OSError as exc:
            raise _write_error(dest, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: errno values that say a file could not be stored (full disk or quota, read-only file
#: system, I/O error, file too large), whatever file the error names.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def _failed_to_store(exc: OSError, tmp: Path) -> bool:
    """Whether an error raised while writing ``tmp`` is about storing it: it names
    ``tmp``, or names no file and is a storage errno (a full disk's write() names none)."""
    if exc.filename is not None:
        return str(exc.filename) == str(tmp)
    return exc.errno in _STORAGE_ERRNOS


def _write_error(dest: Path, exc: OSError) -> GencodecError:
    """A failed write (``[Errno 28] No space left on device``, which names no file) as
    one line naming the output."""
    return GencodecError(f"{dest}: cannot write: {exc.strerror or exc}")


@contextlib.contextmanager
def _to_stdout(suffix: str) -> Iterator[Path]:
    """A temporary file whose content goes to standard output once complete (so that
    a failure writes nothing there, and libraries still get a path with ``suffix``)."""
    fd, tmp = tempfile.mkstemp(prefix=".gencodec-stdout.", suffix=suffix[:16])
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if not _failed_to_store(exc, tmp_path):
                raise
            raise GencodecError(f"{STDIO}: cannot write the copy for standard output in "
                                f"{tempfile.gettempdir()}: {exc.strerror or exc}") from exc
        with open(tmp_path, "rb") as f:
            sys.stdout.flush()
            out = sys.stdout.buffer
            for block in iter(lambda: f.read(1 << 20), b""):
                out.write(block)
            out.flush()
    finally:
        tmp_path.unlink(missing_ok=True)


def is_stdout(path: str | os.PathLike) -> bool:
    """Whether ``path`` names this process's standard output: ``-``, or another name of
    the same open file (``/dev/stdout``, ``/proc/self/fd/1``, the file the shell
    redirected it to)."""
    if str(path) == STDIO:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, closed)
        return False


def image_format(path: str | os.PathLike) -> str:
    """The Pillow format an image written to ``path`` gets, from its extension; PNG
    (lossless) for standard output, a pipe or a device named without one. An output
    with no or an unknown extension is an :class:`InputError`, before any work."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is not None and fmt in Image.SAVE:
        return fmt
    if not suffix and (is_stdout(path) or _is_stream_device(Path(path))):
        return "PNG"
    if not suffix:
        raise InputError(f"{path}: no extension to choose the image format by; name it "
                         f"{Path(path).name}.png (or .jpg, .webp, .tif, ...)")
    raise InputError(f"{path}: cannot write this format: unknown image file extension "
                     f"{suffix} (use .png, .jpg, .webp, .tif, ...)")


def _through_links(p: Path) -> Path:
    """The file a symbolic link names, at the end of any chain of links (it need not
    exist: it is then created); ``p`` itself when it is not a link."""
    if not p.is_symlink():
        return p
    target = Path(os.path.realpath(p))
    if target.is_symlink():
        raise InputError(f"{p}: symbolic link loop")
    return target


def check_output(path: str | os.PathLike, force: bool = False,
                 inputs: tuple[str | os.PathLike, ...] | list = ()) -> None:
    """Raise unless ``path`` can be written: never one of ``inputs`` (not even with
    ``force``), an existing file needs ``force``, a directory or block device never
    is, and the folder must exist and be writable. Standard output (``-``) and other
    character devices and FIFOs are always writable; a symbolic link is checked as the
    file it names. Commands call this before long work so that they fail early;
    :func:`atomic_output` calls it again."""
    dest = Path(path)
    for src in inputs:
        if _same_file(src, dest):
            raise InputError(f"{dest}: is also the input {src}; choose another output name "
                             "(the input is never overwritten)")
    if is_stdout(dest) or _is_stream_device(dest):
        return
    dest = _through_links(dest)
    if dest.is_dir():
        raise InputError(f"{dest}: is a directory")
    if dest.exists() and not dest.is_file():
        raise InputError(f"{dest}: exists and is not a regular file")
    if dest.exists() and not force:
        raise OutputExistsError(f"{dest}: exists (use --force to overwrite)")
    if not dest.parent.is_dir():
        raise InputError(f"{dest}: folder {dest.parent} does not exist")
    if not os.access(dest.parent, os.W_OK | os.X_OK):
        raise InputError(f"{dest}: cannot write in folder {dest.parent} (permission denied "
                         "or read-only file system)")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def _is_stream_device(p: Path) -> bool:
    """A character device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe)."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


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
    """Write an RGB array to ``path`` (format: :func:`image_format`), atomically."""
    image = as_rgb_uint8(image)
    fmt = image_format(path)
    with atomic_output(path, force) as tmp:
        try:
            Image.fromarray(image).save(tmp, format=fmt)
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path}: cannot write this format: {exc}") from None
