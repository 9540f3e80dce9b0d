"""The DiffC codec on the Gaussian spectral model: round trips, determinism,
fingerprints, progressive prefixes, damaged streams."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")

from gencodec import container
from gencodec.codecs_ext import get_codec
from gencodec.errors import BitstreamError, InputError


@pytest.fixture(scope="module")
def codec(profile_file):
    return get_codec("diffc", profile=str(profile_file))


@pytest.fixture(scope="module")
def stream(codec, photo32):
    return codec.encode(photo32, quality=codec.quality.hi)


def test_round_trip_and_determinism(codec, photo32, stream, psnr):
    assert codec.progressive and codec.quality.lo == 1 and codec.quality.hi == 8
    assert codec.quality.default == 6  # the first step with t <= 100 (t=90)
    assert codec.encode(photo32, quality=codec.quality.hi) == stream
    out = codec.decode(stream)
    assert out.shape == photo32.shape and out.dtype == np.uint8
    assert psnr(out, photo32) > 20
    assert np.array_equal(codec.decode(stream), out)


def test_decoder_replays_the_encoders_x_t(codec, photo32):
    from gencodec.diffc import bitstream

    x0 = codec.backbone.encode_image(photo32)
    enc = codec.coder.encode_latent(x0, 5, seed=7)
    x_t, t = codec.coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    assert t == codec.profile.timesteps[4]
    assert np.array_equal(x_t, enc.x_t)


@pytest.mark.parametrize("recon", ["ddim", "ancestral", "x0"])
def test_reconstructions(profile_file, stream, photo32, psnr, recon):
    out = get_codec("diffc", profile=str(profile_file), recon=recon).decode(stream)
    assert psnr(out, photo32) > 20


def test_other_profile_or_model_is_refused(stream, small_profile, tmp_path):
    other = tmp_path / "other.json"
    small_profile.replace(chunk_bits=10).save(other)
    with pytest.raises(BitstreamError, match="fingerprint"):
        get_codec("diffc", profile=str(other)).decode(stream)
    # the message says what this decoder has and what to do (also for a prefix)
    with pytest.raises(BitstreamError, match=r"own diffc_profile.json\); decode with the "
                                             r"--model and -O profile="):
        get_codec("diffc").decode(stream, max_bytes=len(stream) // 2)


def test_progressive_prefixes(codec, profile_file, stream, photo32, psnr):
    from gencodec.diffc import bitstream

    payload = bitstream.read_payload(container.unpack(stream).payload)
    ends, pos = [], container.HEADER_SIZE + 2
    for seg in payload.segments:  # byte offset where each segment ends
        pos += len(bytearray(_varint(seg.n_chunks) + _varint(len(seg.coded)))) + len(seg.coded) + 4
        ends.append(pos)
    assert ends[-1] == len(stream)
    scores = [psnr(codec.decode(stream, max_bytes=n), photo32) for n in ends]
    assert all(b >= a - 0.05 for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] > scores[0] + 5
    # a cut inside a segment decodes the segments before it
    mid = codec.decode(stream, max_bytes=ends[3] + 3)
    assert np.array_equal(mid, codec.decode(stream, max_bytes=ends[3]))
    # a prefix matches a stream encoded at that quality (by a fresh encoder, and by
    # this one, which cuts its last, longer stream)
    fresh = get_codec("diffc", profile=str(profile_file)).encode(photo32, quality=4)
    assert fresh == codec.encode(photo32, quality=4)
    assert np.array_equal(codec.decode(fresh), codec.decode(stream, max_bytes=ends[3]))


def _varint(v: int) -> bytes:
    from gencodec.diffc.bitstream import put_varint

    out = bytearray()
    put_varint(out, v)
    return bytes(out)


def test_truncated_stream_is_an_error(codec, stream):
    for n in (len(stream) - 1, len(stream) // 2, container.HEADER_SIZE + 1):
        with pytest.raises(BitstreamError, match="truncated"):
            codec.decode(stream[:n])
    with pytest.raises(BitstreamError):
        codec.decode(stream, max_bytes=10)
    with pytest.raises(InputError, match="max_bytes must be an integer"):
        codec.decode(stream, max_bytes=len(stream) / 2)  # was a TypeError from slicing


def test_damaged_streams_raise_bitstream_error_only(codec, stream):
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(40):
        b = bytearray(stream)
        for pos in rng.integers(0, len(b), rng.integers(1, 4)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    cases += [stream + b"\0", stream[:container.HEADER_SIZE], bytes(rng.integers(0, 256, 300,
                                                                                  np.uint8))]
    for data in cases:
        for max_bytes in (None, len(data) - 5):
            try:
                codec.decode(data, max_bytes=max_bytes)
            except BitstreamError:
                pass
    # payload damage behind a correct container CRC: forged CRC must still be caught
    head = container.read_header(stream)
    payload = bytearray(container.unpack(stream).payload)
    payload[len(payload) // 2] ^= 0x10
    forged = container.pack("diffc", head.width, head.height, bytes(payload), head.fingerprint)
    with pytest.raises(BitstreamError, match="CRC"):
        codec.decode(forged)
    with pytest.raises(BitstreamError, match="CRC"):
        codec.decode(forged, max_bytes=len(forged))


def test_payloads_of_other_pfr_formats_are_refused(codec, stream):
    """Version 1 payloads were coded with PFR format 1: decoding them with today's
    normals would give a wrong picture, so they are refused with a message that says
    what to do; unknown versions are refused too."""
    head = container.read_header(stream)
    payload = container.unpack(stream).payload
    assert payload[0] == 2
    for version, message in ((1, "version 1 .*PFR format 1.*re-encode"), (7, "unknown DiffC")):
        forged = container.pack("diffc", head.width, head.height, bytes([version]) + payload[1:],
                                head.fingerprint)
        with pytest.raises(BitstreamError, match=message):
            codec.decode(forged)


def test_sizes_padding_and_refusal(codec, photo32, psnr):
    odd = np.ascontiguousarray(photo32[:27, :30])
    out = codec.decode(codec.encode(odd, quality=8))
    assert out.shape == odd.shape and psnr(out, odd) > 20
    with pytest.raises(InputError, match="outside the sizes"):
        codec.encode(np.zeros((8, 4097, 3), np.uint8))


@pytest.mark.parametrize("h, w", [(1, 1), (13, 7), (4, 300), (3, 1)])
def test_images_below_the_least_side_are_padded(codec, photo32, h, w):
    """Sizes under the model's least side (8 for the spectral model) used to be refused
    although the codec pads anyway: they are edge-padded up to it and cropped back."""
    img = np.ascontiguousarray(np.resize(photo32, (h, w, 3)))
    stream = codec.encode(img, quality=3)
    assert container.read_header(stream).width == w
    out = codec.decode(stream)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert codec.encode(img, quality=3) == stream


def _forged(codec, width, height, segments) -> bytes:
    from gencodec.diffc import bitstream

    return container.pack("diffc", width, height, bitstream.write_payload(0, segments),
                          codec.fingerprint)


def test_stream_claiming_a_huge_size_is_refused_before_allocating(codec):
    """A CRC-valid header (forged, or from a build with other limits) claiming 5000x5000
    decoded from the prior for minutes and 4 GB; now refused at once."""
    with pytest.raises(BitstreamError, match="5000x5000 image, larger than"):
        codec.decode(_forged(codec, 5000, 5000, []), max_bytes=200)
    with pytest.raises(BitstreamError, match="GENCODEC_MAX_PIXELS"):
        codec.decode(_forged(codec, 1 << 20, 1 << 20, []), max_bytes=200)


def test_stream_without_steps_is_an_error_unless_a_prefix(codec, stream):
    """A whole stream with no coding step used to decode silently to a random sample of
    the prior; only a cut stream (max_bytes) may hold no complete step."""
    data = _forged(codec, 32, 32, [])
    for max_bytes in (None, len(data)):
        with pytest.raises(BitstreamError, match="no coding step"):
            codec.decode(data, max_bytes=max_bytes)
    assert codec.decode(stream, max_bytes=container.HEADER_SIZE + 2).shape == (32, 32, 3)


def test_bad_options():
    with pytest.raises(InputError):
        get_codec("diffc", recon="nope")
    with pytest.raises(InputError):
        get_codec("diffc", model="/no/such/model")
