"""The bitstream container: layout, round trip, and rejection of every kind of damage."""

from __future__ import annotations

import struct
import zlib

import pytest

from gencodec import container
from gencodec.errors import BitstreamError, GencodecError

FP = bytes(range(32))


def _stream(payload=b"hello payload", codec="jpeg", w=33, h=17, fp=container.ZERO_FINGERPRINT):
    return container.pack(codec, w, h, payload, fp)


def _refix_header_crc(data: bytearray) -> bytearray:
    """Recompute the header CRC after editing a header field on purpose."""
    n = container.HEADER_SIZE - 4
    data[n:n + 4] = struct.pack(">I", zlib.crc32(bytes(data[:n])))
    return data


def test_layout_matches_the_documented_header():
    payload = b"\x00\x01payload\xff"
    s = container.pack("webp", 640, 480, payload, FP)
    assert container.HEADER_SIZE == 64
    assert len(s) == 64 + len(payload)
    assert s[:4] == b"GNCD" == container.MAGIC
    assert s[4] == container.FORMAT_VERSION == 1
    assert s[5] == 0  # flags
    assert struct.unpack(">H", s[6:8])[0] == container.CODEC_IDS["webp"]
    assert s[8:40] == FP
    assert struct.unpack(">II", s[40:48]) == (640, 480)
    assert struct.unpack(">Q", s[48:56])[0] == len(payload)
    assert struct.unpack(">I", s[56:60])[0] == zlib.crc32(payload)
    assert struct.unpack(">I", s[60:64])[0] == zlib.crc32(s[:60])
    assert s[64:] == payload


def test_codec_ids_are_stable():
    # part of the format: never renumbered
    assert container.CODEC_IDS["jpeg"] == 1
    assert container.CODEC_IDS["x265"] == 6
    assert len(set(container.CODEC_IDS.values())) == len(container.CODEC_IDS)


@pytest.mark.parametrize("codec", sorted(container.CODEC_IDS))
def test_pack_unpack_round_trip(codec):
    payload = bytes(range(256)) * 3
    s = container.pack(codec, 1920, 1080, payload, FP)
    st = container.unpack(s, codec=codec, fingerprint=FP)
    assert st.payload == payload and st.truncated is False
    hd = st.header
    assert (hd.codec, hd.width, hd.height, hd.payload_length, hd.fingerprint, hd.version) == (
        codec, 1920, 1080, len(payload), FP, container.FORMAT_VERSION)
    assert container.read_header(s) == hd
    # bytearray and memoryview inputs too
    assert container.unpack(bytearray(s)).payload == payload
    assert container.unpack(memoryview(s)).payload == payload


def test_empty_payload_round_trips():
    s = container.pack("jpeg", 1, 1, b"")
    st = container.unpack(s)
    assert st.payload == b"" and st.header.payload_length == 0


def test_stock_codecs_have_zero_fingerprint():
    st = container.unpack(_stream())
    assert st.header.fingerprint == bytes(32) == container.ZERO_FINGERPRINT


@pytest.mark.parametrize("kwargs, match", [
    (dict(codec="nope"), "unknown codec"),
    (dict(fp=b"short"), "fingerprint"),
    (dict(w=0), "size"),
    (dict(h=-1), "size"),
    (dict(w=container.MAX_DIMENSION + 1), "size"),
])
def test_pack_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _stream(**kwargs)


def test_wrong_magic():
    s = bytearray(_stream())
    s[0:4] = b"RIFF"
    with pytest.raises(BitstreamError, match="magic"):
        container.unpack(bytes(s))
    with pytest.raises(BitstreamError, match="magic"):
        container.read_header(b"\x89PNG\r\n\x1a\n" + bytes(100))


@pytest.mark.parametrize("fmt, kind", [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WebP"),
                                       ("GIF", "GIF"), ("AVIF", "AVIF"), ("HEIF", "HEIF")])
def test_wrong_magic_names_a_plain_image_file(fmt, kind):
    """``gencodec decode photo.jpg`` on an ``encode --raw`` output (or any plain image)
    says what the file is instead of only "wrong magic"."""
    import io

    from PIL import Image

    import gencodec.imageio  # noqa: F401 - registers the HEIF plug-in

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format=fmt)
    with pytest.raises(BitstreamError, match=f"wrong magic; it looks like a plain {kind} file"):
        container.read_header(buf.getvalue())
    with pytest.raises(BitstreamError, match=r"wrong magic\)$"):
        container.read_header(b"not an image at all, not a stream either" + bytes(40))


def test_unknown_version():
    s = bytearray(_stream())
    s[4] = 2
    with pytest.raises(BitstreamError, match="version 2"):
        container.unpack(bytes(s))
    # also when the header CRC was recomputed (a genuinely newer stream)
    with pytest.raises(BitstreamError, match="unknown format version"):
        container.unpack(bytes(_refix_header_crc(s)))


def test_truncated_payload():
    s = _stream(b"x" * 100)
    with pytest.raises(BitstreamError, match="truncated payload: 40 of 100"):
        container.unpack(s[:-60])


def test_truncated_header():
    s = _stream()
    for n in (1, 3, 4, 10, 63):
        with pytest.raises(BitstreamError, match="truncated header"):
            container.unpack(s[:n])
    with pytest.raises(BitstreamError, match="empty"):
        container.unpack(b"")


def test_payload_crc_mismatch():
    s = bytearray(_stream(b"x" * 100))
    s[-1] ^= 0x10
    with pytest.raises(BitstreamError, match="corrupt payload .CRC"):
        container.unpack(bytes(s))


def test_header_crc_mismatch():
    s = bytearray(_stream())
    s[41] ^= 0x01  # the width
    with pytest.raises(BitstreamError, match="corrupt header .CRC"):
        container.unpack(bytes(s))


def test_trailing_bytes():
    with pytest.raises(BitstreamError, match="unexpected bytes after"):
        container.unpack(_stream() + b"\x00")


def test_fingerprint_mismatch_says_so():
    s = _stream(fp=FP)
    other = bytes(32)
    with pytest.raises(BitstreamError, match="model fingerprint mismatch") as e:
        container.unpack(s, fingerprint=other)
    msg = str(e.value)
    assert FP.hex()[:16] in msg and other.hex()[:16] in msg
    assert container.unpack(s, fingerprint=FP).header.fingerprint == FP


def test_codec_mismatch():
    with pytest.raises(BitstreamError, match="'jpeg', not 'webp'"):
        container.unpack(_stream(codec="jpeg"), codec="webp")


def test_nonzero_flags_and_unknown_codec_id_are_rejected():
    s = bytearray(_stream())
    s[5] = 1
    with pytest.raises(BitstreamError, match="flags"):
        container.unpack(bytes(_refix_header_crc(s)))
    s = bytearray(_stream())
    s[6:8] = struct.pack(">H", 999)
    with pytest.raises(BitstreamError, match="unknown codec id 999"):
        container.unpack(bytes(_refix_header_crc(s)))
    s = bytearray(_stream())
    s[40:44] = struct.pack(">I", 0)
    with pytest.raises(BitstreamError, match="invalid image size"):
        container.unpack(bytes(_refix_header_crc(s)))


def test_allow_prefix():
    payload = bytes(range(200))
    s = _stream(payload, fp=FP)
    # a prefix: the header is parsed, the payload is what there is, flagged truncated
    st = container.unpack(s[:64 + 50], allow_prefix=True, fingerprint=FP)
    assert st.truncated is True and st.payload == payload[:50]
    assert st.header.payload_length == 200
    st = container.unpack(s[:64], allow_prefix=True)
    assert st.truncated is True and st.payload == b""
    # the whole stream: not truncated, and the payload CRC is still checked
    st = container.unpack(s, allow_prefix=True)
    assert st.truncated is False and st.payload == payload
    bad = bytearray(s)
    bad[-1] ^= 1
    with pytest.raises(BitstreamError, match="CRC"):
        container.unpack(bytes(bad), allow_prefix=True)
    # the header is still verified in a prefix
    bad = bytearray(s[:64 + 50])
    bad[45] ^= 0x40
    with pytest.raises(BitstreamError, match="corrupt header"):
        container.unpack(bytes(bad), allow_prefix=True)
    with pytest.raises(BitstreamError, match="fingerprint"):
        container.unpack(s[:100], allow_prefix=True, fingerprint=bytes(32))
    with pytest.raises(BitstreamError, match="truncated header"):
        container.unpack(s[:30], allow_prefix=True)
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        container.unpack(s + b"!", allow_prefix=True)


def test_bitstream_error_is_a_gencodec_error():
    assert issubclass(BitstreamError, GencodecError)


# -- exhaustive damage: every byte flipped, every truncation ------------------------

def _expect_rejected(decode, data):
    try:
        decode(data)
    except BitstreamError:
        return
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"raised {type(exc).__name__}, not BitstreamError: {exc}")
    pytest.fail("damaged stream decoded silently")


@pytest.fixture(scope="module")
def tiny_jpeg_stream(tiny_image):
    from gencodec.codecs_ext import get_codec

    codec = get_codec("jpeg")
    data = codec.encode(tiny_image, 50)
    assert len(data) < 1000
    return codec, data


@pytest.mark.parametrize("mask", [0xFF, 0x01, 0x80])
def test_every_byte_flip_is_rejected(tiny_jpeg_stream, mask):
    codec, data = tiny_jpeg_stream
    assert codec.decode(data).shape == (16, 16, 3)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= mask
        _expect_rejected(codec.decode, bytes(bad))
        _expect_rejected(container.unpack, bytes(bad))


def test_every_truncation_is_rejected(tiny_jpeg_stream):
    codec, data = tiny_jpeg_stream
    for n in range(len(data)):
        _expect_rejected(codec.decode, data[:n])
        _expect_rejected(container.unpack, data[:n])
    for extra in (b"\x00", b"GNCD", data):
        _expect_rejected(codec.decode, data + extra)


def test_flips_in_a_fingerprinted_stream_are_rejected():
    s = _stream(b"p" * 40, fp=FP)
    for i in range(len(s)):
        bad = bytearray(s)
        bad[i] ^= 0xFF
        _expect_rejected(lambda d: container.unpack(d, fingerprint=FP), bytes(bad))
        if i < container.HEADER_SIZE:  # a prefix reader still verifies the header
            _expect_rejected(
                lambda d: container.unpack(d, fingerprint=FP, allow_prefix=True), bytes(bad))
