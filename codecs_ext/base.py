"""The one interface every codec follows.

A codec has a ``name``, a quality parameter with a documented range and direction,
``encode(image, quality) -> bytes`` and ``decode(bytes) -> image``. Images are HxWx3
uint8 RGB arrays (video codecs take and return TxHxWx3). Streams are framed in the
gencodec container (:mod:`gencodec.container`), which carries the true image size, so
codecs that need even, block-aligned or minimum sizes pad internally (edge replication)
and crop back on decode.

:func:`find_quality_for_bpp` searches a codec's quality range by bisection for the
setting whose rate is closest to a target bits per pixel.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import numpy as np

from gencodec import container, imageio
from gencodec.errors import BitstreamError, GencodecError, InputError
from gencodec.imageio import as_rgb_uint8


@dataclasses.dataclass(frozen=True)
class QualityRange:
    """The quality parameter of a codec: ``lo..hi`` in steps of ``step``.

    ``higher_is_better`` says which way quality (and rate) goes: True for JPEG's
    quality, False for a quantiser such as BPG's QP."""

    name: str
    lo: float
    hi: float
    default: float
    higher_is_better: bool = True
    step: float = 1.0

    def check(self, q: float) -> float:
        """Validate a setting and return it as the codec uses it (an int for integer
        steps): out of range or between steps is an :class:`InputError`, never a
        silent rounding (``quality=75.7`` would be coded as 75 and reported as 75.7)."""
        try:
            fq = float(q)
        except (TypeError, ValueError):
            raise InputError(f"{self.name} must be a number, got {q!r}") from None
        if not (self.lo <= fq <= self.hi):
            better = "higher" if self.higher_is_better else "lower"
            raise InputError(f"{self.name} {fq:g} is outside {self.lo:g}..{self.hi:g} "
                             f"({better} is better quality)")
        steps = (fq - self.lo) / self.step
        if abs(steps - round(steps)) > 1e-9:
            raise InputError(f"{self.name} {fq:g} is not a valid setting: use {self.lo:g}, "
                             f"{self.lo + self.step:g}, ... {self.hi:g} (steps of {self.step:g})")
        if float(self.step).is_integer() and float(self.lo).is_integer():
            return int(round(fq))
        return fq

    def describe(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.name} {self.lo:g}..{self.hi:g}, {better} = better (default {self.default:g})"


class Codec(abc.ABC):
    """Base class: validation, padding, container framing. Subclasses implement
    :meth:`_encode_payload` and :meth:`_decode_payload` on padded images."""

    name: str = ""
    quality: QualityRange
    #: Encoders that need sizes multiple of this get edge-padded input.
    pad_multiple: int = 1
    #: ... and at least this wide and high (a multiple of ``pad_multiple``).
    min_coded_size: int = 1
    #: The model fingerprint written in the container; zeros for stock codecs.
    fingerprint: bytes = container.ZERO_FINGERPRINT
    #: Progressive codecs decode a prefix of a stream: ``decode(data, max_bytes=N)``.
    progressive: bool = False
    #: The largest side the format codes (and its decoder reads back), if limited.
    max_coded_side: int | None = None
    #: Whether :meth:`payload` is a file other tools open (``encode --raw`` needs it).
    payload_is_standard: bool = True
    #: File name suffixes of the payload as a file, the usual one first.
    suffixes: tuple[str, ...] = ()
    #: Constructor options that change decoding; the others only shape the encoder,
    #: whose choices the stream records (``decode -O subsampling=444`` is refused).
    decoder_options: tuple[str, ...] = ()

    # -- what subclasses provide -------------------------------------------------
    @abc.abstractmethod
    def _encode_payload(self, image: np.ndarray, quality: float) -> bytes:
        """Encode a padded HxWx3 uint8 image."""

    @abc.abstractmethod
    def _decode_payload(self, payload: bytes, width: int, height: int) -> np.ndarray:
        """Decode a payload to an image at least ``height`` x ``width`` (padded size)."""

    def backend(self) -> str:
        """The library or program doing the work here (shown by ``gencodec codecs``)."""
        return "built-in"

    def available(self) -> tuple[bool, str]:
        """Whether the codec can run on this machine, and why not."""
        return True, ""

    def rd_settings(self) -> list[float] | None:
        """The settings an R-D curve samples when none are given, low to high quality,
        for codecs whose range depends on the instance (a DiffC profile); None for the
        others (``gencodec.eval.runner.DEFAULT_QUALITIES`` has theirs)."""
        return None

    # -- the public interface ---------------------------------------------------
    def encode(self, image: np.ndarray, quality: float | None = None) -> bytes:
        """Encode an HxWx3 uint8 RGB image at ``quality`` into a container stream.

        Raises :class:`InputError` for bad images, settings and sizes the format
        cannot hold, and :class:`GencodecError` when the encoder itself fails."""
        image = self._prepare(image)
        q = self.quality.check(self.quality.default if quality is None else quality)
        h, w = image.shape[-3:-1]
        side = self.max_coded_side
        if side is not None and max(self.padded_size(w, h)) > side:
            raise InputError(f"{self.name}: a {w}x{h} image is too large for this format "
                             f"(at most {side} pixels a side)")
        try:
            payload = self._encode_payload(self._pad(image), q)
        except GencodecError:
            raise
        except Exception as exc:  # noqa: BLE001 - libraries raise all sorts on odd input
            why = str(exc) or type(exc).__name__
            raise GencodecError(f"{self.name}: the encoder failed on a {w}x{h} image "
                                f"({self.quality.name}={q}): {why}") from exc
        return container.pack(self.name, w, h, payload, self.fingerprint)

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a container stream made by :meth:`encode`."""
        return self._decode_stream(container.unpack(data, codec=self.name,
                                                    fingerprint=self.fingerprint))

    def _decode_stream(self, stream: container.Stream) -> np.ndarray:
        """The image of an unpacked stream: its size within the pixel limit, the
        decoder's failures as :class:`BitstreamError`, the decoded shape checked."""
        h, w = stream.header.height, stream.header.width
        if w * h > imageio.MAX_PIXELS:
            raise BitstreamError(f"{self.name}: stream claims {w}x{h} pixels, above the limit "
                                 f"of {imageio.MAX_PIXELS} (GENCODEC_MAX_PIXELS)")
        try:
            out = self._decode_payload(stream.payload, w, h)
        except BitstreamError:
            raise
        except Exception as exc:  # the payload passed the CRC but the decoder refused it
            raise BitstreamError(f"{self.name}: payload does not decode: {exc}") from None
        out = np.asarray(out)
        if out.ndim < 3 or out.shape[-1] != 3 or out.shape[-3] < h or out.shape[-2] < w:
            raise BitstreamError(f"{self.name}: decoded an array of shape {out.shape}, "
                                 f"expected {w}x{h} RGB")
        return np.ascontiguousarray(out[..., :h, :w, :])

    def payload(self, data: bytes) -> bytes:
        """The codec's own bitstream inside a container (a file any standard decoder
        reads where :attr:`payload_is_standard`)."""
        return container.unpack(data, codec=self.name, fingerprint=self.fingerprint).payload

    # -- helpers -------------------------------------------------------------------
    def _prepare(self, image: np.ndarray) -> np.ndarray:
        return as_rgb_uint8(image)

    def padded_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the payload is coded at: ``width`` x ``height`` rounded up to
        :attr:`pad_multiple`, and to at least :attr:`min_coded_size`."""
        m, least = self.pad_multiple, self.min_coded_size
        return (max(least, width + (-width) % m), max(least, height + (-height) % m))

    def _pad(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[-3:-1]
        pw, ph = (n - o for n, o in zip(self.padded_size(w, h), (w, h)))
        if ph == 0 and pw == 0:
            return image
        pad = [(0, 0)] * (image.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
        return np.pad(image, pad, mode="edge")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.quality.describe()}>"


def chroma_format(value, allowed: tuple[str, ...], what: str) -> str:
    """Normalise a chroma subsampling option: ``"444"``, ``"4:4:4"`` and ``444`` (an
    int, as ``-O subsampling=444`` parses) all give ``"444"``."""
    v = str(value).replace(":", "").strip()
    if v not in allowed:
        raise InputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return v


def int_option(value, lo: int, hi: int, what: str) -> int:
    """An integer codec option in ``lo..hi``, or InputError."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise InputError(f"{what} must be in {lo}..{hi}, got {v}")
    return v


def pixels_of(image: np.ndarray) -> int:
    """Pixels in an image (HxWx3) or a sequence (TxHxWx3)."""
    a = np.asarray(image)
    return int(np.prod(a.shape[:-1]))


def bits_per_pixel(data: bytes, image: np.ndarray) -> float:
    """Rate of ``data`` in bits per pixel of ``image``: of a whole stream (container
    header included) when ``data`` is one, of the bare file for a payload."""
    return len(data) * 8.0 / pixels_of(image)


@dataclasses.dataclass(frozen=True)
class BppResult:
    """What :func:`find_quality_for_bpp` found: the setting, the rate it gives (whole
    stream, or bare payload with ``header=False``), the container stream, and whether
    the target lay between the rates of the lowest and the highest setting (False: the
    codec cannot get there on this image, and the nearest end of the range is given)."""

    quality: float
    bpp: float
    data: bytes
    reachable: bool = True
    #: (setting, bpp) of the adjacent settings whose rates bracket the target: the
    #: closest any setting gets (empty when the target is out of reach)
    bracket: tuple[tuple[float, float], ...] = ()


def check_target_bpp(target_bpp: float) -> float:
    """A target rate must be a positive, finite number of bits per pixel."""
    if not (target_bpp > 0 and math.isfinite(target_bpp)):
        raise InputError(f"target bpp must be a positive number, got {target_bpp}")
    return target_bpp


def find_quality_for_bpp(codec: Codec, image: np.ndarray, target_bpp: float, *,
                         header: bool = True) -> BppResult:
    """Bisect the codec's quality range for the rate closest to ``target_bpp``.

    The rate counts the whole stream, its 64-byte container header included; with
    ``header=False`` only the payload (the bare file ``Codec.payload`` and
    ``gencodec encode --raw`` give). Rate is assumed to rise monotonically with
    quality. The result reports the bpp actually reached (within one quality step of
    the best the codec can do) and whether the target was within reach."""
    check_target_bpp(target_bpp)
    qr = codec.quality
    n = int(round((qr.hi - qr.lo) / qr.step))
    overhead = 0 if header else container.HEADER_SIZE

    def q_at(i: int) -> float:  # i = 0 is the lowest quality, n the highest
        v = qr.lo + i * qr.step if qr.higher_is_better else qr.hi - i * qr.step
        return int(v) if float(qr.step).is_integer() else v

    cache: dict[int, BppResult] = {}

    def at(i: int) -> BppResult:
        if i not in cache:
            data = codec.encode(image, q_at(i))
            cache[i] = BppResult(q_at(i), (len(data) - overhead) * 8.0 / pixels_of(image), data)
        return cache[i]

    lo, hi = 0, n
    reachable = at(lo).bpp <= target_bpp <= at(hi).bpp
    if at(lo).bpp < target_bpp < at(hi).bpp:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if at(mid).bpp < target_bpp:
                lo = mid
            else:
                hi = mid
    best = min(cache.values(), key=lambda r: abs(r.bpp - target_bpp))
    bracket = tuple((at(i).quality, at(i).bpp) for i in (lo, hi)) if reachable else ()
    return dataclasses.replace(best, reachable=reachable, bracket=bracket)
