"""The gencodec bitstream container.

Every stream gencodec writes starts with this fixed 64-byte header (big-endian)::

    offset size field
    0      4    magic            b"GNCD"
    4      1    format version   (FORMAT_VERSION)
    5      1    flags            reserved, must be 0
    6      2    codec id         (CODEC_IDS)
    8      32   model fingerprint  sha256 of weights + coding profile; zeros for stock codecs
    40     4    image width
    44     4    image height
    48     8    payload length   in bytes
    56     4    payload CRC32
    60     4    header CRC32     over bytes 0..59

followed by exactly ``payload length`` bytes of payload. The header has its own CRC so
that a damaged header is told apart from a damaged payload, and so that codecs with
progressive payloads (DiffC) can read a *prefix* of a stream (``allow_prefix=True``):
the header is then still verified, and the payload's integrity is left to the codec's
own per-segment checks.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from gencodec.errors import BitstreamError

MAGIC = b"GNCD"
FORMAT_VERSION = 1
FINGERPRINT_SIZE = 32
ZERO_FINGERPRINT = bytes(FINGERPRINT_SIZE)

_HEADER = struct.Struct(">4sBBH32sIIQI")  # everything before the header CRC
HEADER_SIZE = _HEADER.size + 4  # 64

#: Codec ids are part of the format: never renumber, only append.
CODEC_IDS: dict[str, int] = {
    "jpeg": 1,
    "webp": 2,
    "bpg": 3,
    "heif": 4,
    "avif": 5,
    "x265": 6,
    "diffc": 16,
    "osdiff": 17,
}
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}

MAX_DIMENSION = 1 << 20


def _plain_file_kind(head: bytes) -> str | None:
    """Name the format of a file that is not a gencodec stream, when it is one people
    confuse with it (``encode --raw`` output, a stock codec's own file)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BPG\xfb"):
        return "BPG"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
            return "HEIF"
        return "MP4/ISO media"
    if head.startswith(b"GIF8"):
        return "GIF"
    return None


@dataclasses.dataclass(frozen=True)
class Header:
    """The decoded container header."""

    codec: str
    width: int
    height: int
    payload_length: int
    fingerprint: bytes = ZERO_FINGERPRINT
    version: int = FORMAT_VERSION


@dataclasses.dataclass(frozen=True)
class Stream:
    """A parsed stream: the header, the payload and whether it is a prefix only."""

    header: Header
    payload: bytes
    truncated: bool = False


def pack(codec: str, width: int, height: int, payload: bytes,
         fingerprint: bytes = ZERO_FINGERPRINT) -> bytes:
    """Frame ``payload`` in a container header."""
    if codec not in CODEC_IDS:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODEC_IDS)}")
    if len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(fingerprint)}")
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise ValueError(f"image size {width}x{height} is outside 1..{MAX_DIMENSION}")
    payload = bytes(payload)
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, CODEC_IDS[codec], fingerprint,
                        width, height, len(payload), zlib.crc32(payload))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def read_header(data: bytes) -> Header:
    """Parse and verify the header alone (used by ``gencodec info`` and by :func:`unpack`)."""
    try:
        data = memoryview(data)
    except TypeError:
        raise BitstreamError(f"expected bytes, got {type(data).__name__}") from None
    if len(data) == 0:
        raise BitstreamError("empty stream")
    if len(data) < 4 and MAGIC.startswith(bytes(data)):
        raise BitstreamError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    if bytes(data[:4]) != MAGIC:
        kind = _plain_file_kind(bytes(data[:16]))
        hint = f"; it looks like a plain {kind} file" if kind else ""
        raise BitstreamError(f"not a gencodec stream (wrong magic{hint})")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    magic, version, flags, codec_id, fingerprint, width, height, length, _ = _HEADER.unpack(
        data[:_HEADER.size])
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unknown format version {version} (this gencodec reads "
                             f"version {FORMAT_VERSION})")
    (header_crc,) = struct.unpack(">I", data[_HEADER.size:HEADER_SIZE])
    if zlib.crc32(data[:_HEADER.size]) != header_crc:
        raise BitstreamError("corrupt header (CRC mismatch)")
    if flags != 0:
        raise BitstreamError(f"unsupported header flags 0x{flags:02x}")
    if codec_id not in _CODEC_NAMES:
        raise BitstreamError(f"unknown codec id {codec_id}")
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise BitstreamError(f"invalid image size {width}x{height}")
    return Header(_CODEC_NAMES[codec_id], width, height, length, bytes(fingerprint), version)


def unpack(data: bytes, *, codec: str | None = None, fingerprint: bytes | None = None,
           allow_prefix: bool = False) -> Stream:
    """Parse and verify a stream.

    Raises :class:`BitstreamError` on a wrong magic, an unknown version, a corrupt
    header or payload (CRC), a truncated payload (unless ``allow_prefix``), trailing
    bytes, another codec than ``codec`` or another model than ``fingerprint``.
    """
    header = read_header(data)
    if codec is not None and header.codec != codec:
        raise BitstreamError(f"stream is for codec {header.codec!r}, not {codec!r}")
    if fingerprint is not None and header.fingerprint != fingerprint:
        raise BitstreamError(
            "model fingerprint mismatch: the stream was made with another model or coding "
            f"profile (stream {header.fingerprint.hex()[:16]}..., decoder "
            f"{fingerprint.hex()[:16]}...)")
    view = memoryview(data)
    payload = bytes(view[HEADER_SIZE:])
    (payload_crc,) = struct.unpack(">I", view[_HEADER.size - 4:_HEADER.size])
    if len(payload) < header.payload_length:
        if allow_prefix:
            return Stream(header, payload, truncated=True)
        raise BitstreamError(f"truncated payload: {len(payload)} of {header.payload_length} bytes")
    if len(payload) > header.payload_length:
        raise BitstreamError(f"{len(payload) - header.payload_length} unexpected bytes after "
                             "the payload")
    if zlib.crc32(payload) != payload_crc:
        raise BitstreamError("corrupt payload (CRC mismatch)")
    return Stream(header, payload)
