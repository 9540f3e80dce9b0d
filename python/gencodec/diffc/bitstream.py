"""The DiffC payload (inside the gencodec container) and the entropy coding of PFR indices.

Layout, all integers LEB128 varints unless said otherwise::

    payload   = version (1 byte, PAYLOAD_VERSION) | seed (varint) | segment*
    segment   = n_chunks | n_bytes | coded indices (n_bytes) | crc (4 bytes, big-endian)

There is one segment per coding step, in the order of the profile's timesteps, so a
prefix of the payload holds the first steps. ``crc`` is the CRC32 of the payload from
its first byte to the end of this segment's indices (a running CRC), so every segment
also vouches for the header and for the segments before it. The number of steps is not
stored: it is the number of segments, so dropping trailing segments leaves a valid
stream of a lower quality.

The indices of a step are coded with constriction's range coder under a Zipf-like
model p(n) ~ (n + 1)^-s over 0..2^k-1 (the paper's entropy model of the PFR index;
``s`` comes from the profile), instead of k raw bits each.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import zlib

import numpy as np

from gencodec.errors import BitstreamError

#: 2: PFR format 2 (Philox4x32-7, table normals, candidate rows: gencodec.rcc).
#: 1: PFR format 1 (Philox4x32-10, Box-Muller normals), no longer decoded.
PAYLOAD_VERSION = 2


# -- varints -------------------------------------------------------------------------
def put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return


def get_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, new position); IndexError when the data ends inside the varint."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise BitstreamError("malformed varint in DiffC payload")


# -- the index model -----------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def index_model(chunk_bits: int, exponent: float):
    """constriction categorical model of a k-bit PFR index (truncated Zipf)."""
    import constriction

    n = np.arange(1, (1 << chunk_bits) + 1, dtype=np.float64)
    p = n ** -float(exponent)
    return constriction.stream.model.Categorical(p / p.sum(), perfect=False)


def encode_indices(indices: np.ndarray, chunk_bits: int, exponent: float) -> bytes:
    import constriction

    if len(indices) == 0:
        return b""
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(np.asarray(indices, np.int32), index_model(chunk_bits, exponent))
    words = enc.get_compressed().astype(">u4").tobytes()
    return words.rstrip(b"\0")  # the decoder pads with zeros again


def decode_indices(data: bytes, count: int, chunk_bits: int, exponent: float) -> np.ndarray:
    import constriction

    if count == 0:
        if data:
            raise BitstreamError("DiffC segment has bytes but no chunks")
        return np.zeros(0, np.uint32)
    padded = data + b"\0" * (-len(data) % 4)
    words = np.frombuffer(padded, ">u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    out = np.asarray(dec.decode(index_model(chunk_bits, exponent), count), np.int64)
    if np.any(out < 0) or np.any(out >= (1 << chunk_bits)):
        raise BitstreamError("DiffC segment decodes to an index out of range")
    return out.astype(np.uint32)


# -- payload ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Segment:
    n_chunks: int
    coded: bytes


@dataclasses.dataclass(frozen=True)
class Payload:
    seed: int
    segments: list[Segment]
    #: The payload ended inside a segment (a prefix): the partial segment was dropped.
    truncated: bool = False


def write_payload(seed: int, segments: list[Segment]) -> bytes:
    out = bytearray([PAYLOAD_VERSION])
    put_varint(out, seed)
    for seg in segments:
        put_varint(out, seg.n_chunks)
        put_varint(out, len(seg.coded))
        out += seg.coded
        out += struct.pack(">I", zlib.crc32(out))  # CRC of everything before it
    return bytes(out)


def cut_payload(data: bytes, steps: int) -> bytes:
    """The payload of the first ``steps`` steps (a lower quality of the same image)."""
    parsed = read_payload(data)
    return write_payload(parsed.seed, parsed.segments[:steps])


def read_payload(data: bytes, *, prefix: bool = False) -> Payload:
    """Parse a payload. With ``prefix`` the data may end anywhere after the seed: the
    segments complete in it are returned. A CRC mismatch is always an error."""
    try:
        if data[0] == 1:
            raise BitstreamError(
                "DiffC payload version 1 was coded with PFR format 1 (Philox4x32-10, "
                "Box-Muller normals), which this gencodec no longer draws: re-encode the "
                f"image (this gencodec reads version {PAYLOAD_VERSION})")
        if data[0] != PAYLOAD_VERSION:
            raise BitstreamError(f"unknown DiffC payload version {data[0]} (this gencodec "
                                 f"reads version {PAYLOAD_VERSION})")
        seed, pos = get_varint(data, 1)
    except IndexError:
        raise BitstreamError("DiffC payload too short for its header") from None
    segments: list[Segment] = []
    running, checked = 0, 0
    while pos < len(data):
        try:
            n_chunks, p = get_varint(data, pos)
            n_bytes, p = get_varint(data, p)
        except IndexError:
            return _ended_inside(segments, seed, prefix)
        end = p + n_bytes
        if end + 4 > len(data):
            return _ended_inside(segments, seed, prefix)
        running = zlib.crc32(data[checked:end], running)
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if running != crc:
            raise BitstreamError(f"corrupt DiffC segment {len(segments)} (CRC mismatch)")
        segments.append(Segment(n_chunks, bytes(data[p:end])))
        running = zlib.crc32(data[end:end + 4], running)
        pos = checked = end + 4
    return Payload(seed, segments)


def _ended_inside(segments, seed, prefix) -> Payload:
    if not prefix:
        raise BitstreamError("truncated DiffC segment")
    return Payload(seed, segments, truncated=True)
