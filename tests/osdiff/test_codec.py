"""The ``osdiff`` codec: container round trip, determinism across processes and thread
counts, fingerprints, damaged streams, the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from gencodec import container
from gencodec.errors import BitstreamError, InputError


@pytest.fixture(scope="module")
def codecs(osdiff_dirs):
    from gencodec.codecs_ext import get_codec

    return get_codec("osdiff", model=str(osdiff_dirs[0])), get_codec("osdiff",
                                                                     model=str(osdiff_dirs[1]))


@pytest.fixture(scope="module")
def stream(codecs, photo48x40):
    return codecs[0].encode(photo48x40, quality=2)


def test_round_trip(codecs, stream, photo48x40, psnr):
    codec = codecs[0]
    head = container.unpack(stream).header
    assert (head.codec, head.width, head.height) == ("osdiff", 48, 40)
    assert head.fingerprint == codec.fingerprint_of(2) != codec.fingerprint_of(1)
    out = codec.decode(stream)
    assert out.shape == photo48x40.shape and out.dtype == np.uint8
    assert np.array_equal(out, codec.decode(stream))  # deterministic
    assert codec.encode(photo48x40, quality=2) == stream  # deterministic bytes
    assert codec.encode(photo48x40, quality=1) != stream
    assert np.isfinite(psnr(out, photo48x40))


def test_decoded_shape_is_checked(codecs, stream, monkeypatch):
    """A decoder that gives an image smaller than the stream's (a 48x32 one for 48x40)
    is refused by the base class's shape check, not cropped silently."""
    codec = codecs[0]
    model = codec.model(2)
    whole = model.decompress
    monkeypatch.setattr(model, "decompress", lambda words, shape: whole(words, shape)[..., :32, :])
    with pytest.raises(BitstreamError, match=r"decoded an array of shape \(32, 48, 3\)"):
        codec.decode(stream)


def test_quality_range_and_options(codecs, osdiff_dirs, tmp_path):
    from gencodec.codecs_ext import get_codec

    from gencodec.codecs_ext.osdiff import OsdiffCodec

    assert (codecs[0].quality.lo, codecs[0].quality.hi) == (1, 2)
    # without a model (gencodec codecs): the format's range, from the class
    assert (OsdiffCodec.quality.lo, OsdiffCodec.quality.hi) == (1, 255)
    with pytest.raises(InputError):
        codecs[0].encode(np.zeros((16, 16, 3), np.uint8), quality=3)
    with pytest.raises(InputError, match="needs --model"):
        get_codec("osdiff")
    with pytest.raises(InputError, match="rate models"):
        get_codec("osdiff", model=str(tmp_path))


def test_other_weights_are_refused(codecs, stream):
    with pytest.raises(BitstreamError, match="fingerprint"):
        codecs[1].decode(stream)


def test_damaged_streams_raise_bitstream_error_only(codecs, stream):
    codec = codecs[0]
    for n in (0, 10, container.HEADER_SIZE, container.HEADER_SIZE + 3, len(stream) - 1):
        with pytest.raises(BitstreamError):
            codec.decode(stream[:n])
    rng = np.random.default_rng(0)
    for _ in range(20):
        b = bytearray(stream)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            codec.decode(bytes(b))


def test_forged_payloads_raise_bitstream_error(codecs, stream):
    """Payloads with valid CRCs (forged or from a buggy writer) are refused, never
    decoded silently: a head that is not ours, a body that is not whole words, and
    missing, extra or altered words (caught by the end marker or the leftover check)."""
    codec = codecs[0]
    head = container.unpack(stream).header
    payload = container.unpack(stream).payload
    rng = np.random.default_rng(1)
    variants = {
        "wrong magic": b"XXXX" + payload[4:],
        "unknown version": payload[:4] + b"\x09" + payload[5:],
        "version 1 (no end marker)": payload[:4] + b"\x01" + payload[5:],
        "version 2 (PFR format 1 noise)": payload[:4] + b"\x02" + payload[5:],
        "q out of range": payload[:5] + b"\x07" + payload[6:],
        "q 0": payload[:5] + b"\x00" + payload[6:],
        "empty body": payload[:6],
        "short head": payload[:5],
        "not whole words": payload[:-1],
        "appended zero word": payload + b"\0\0\0\0",
        "appended word": payload + b"\x01\x02\x03\x04",
        "dropped first word": payload[:6] + payload[10:],
        "dropped last word": payload[:-4],
        "swapped words": payload[:6] + payload[10:14] + payload[6:10] + payload[14:],
    }
    variants.update({f"random body {i}": payload[:6] + rng.integers(
        0, 256, len(payload) - 6, np.uint8).tobytes() for i in range(5)})
    for what, p in variants.items():
        data = container.pack("osdiff", head.width, head.height, p, head.fingerprint)
        with pytest.raises(BitstreamError):
            codec.decode(data)
            pytest.fail(f"{what}: decoded")
    data = container.pack("osdiff", head.width, head.height, variants["version 1 (no end "
                          "marker)"], head.fingerprint)
    with pytest.raises(BitstreamError, match="version 1 .*re-encode"):
        codec.decode(data)
    data = container.pack("osdiff", head.width, head.height, variants["version 2 (PFR format "
                          "1 noise)"], head.fingerprint)
    with pytest.raises(BitstreamError, match="version 2 .*PFR format 1.*re-encode"):
        codec.decode(data)


def test_backbone_is_hashed_once(osdiff_dirs, monkeypatch):
    """The fingerprints of several rate models share one hash of the backbone's files."""
    from gencodec.codecs_ext import get_codec
    from gencodec.diffusion import base

    hashed = []
    real = base.sha256_files

    def counting(paths, extra=b""):
        hashed.extend(p for p in paths if "unet" in p.parts)
        return real(paths, extra)

    monkeypatch.setattr(base, "sha256_files", counting)
    codec = get_codec("osdiff", model=str(osdiff_dirs[0]))
    fingerprints = {codec.fingerprint_of(q) for q in (1, 2)}
    assert len(fingerprints) == 2 and hashed
    assert len(hashed) == len(set(hashed))  # each backbone file hashed once


def _broken_copy(src, dst, what: str):
    """A copy of a model folder whose q2 rate model is damaged: ``config`` (not JSON),
    ``truncated`` (half a safetensors file) or ``shape`` (one tensor of another shape:
    loading fails after the other tensors are copied in)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    q2 = dst / "osdiff" / "q2"
    if what == "config":
        (q2 / "config.json").write_text("{not json")
    elif what == "truncated":
        data = (q2 / "model.safetensors").read_bytes()
        (q2 / "model.safetensors").write_bytes(data[:len(data) // 2])
    else:
        state = load_file(str(q2 / "model.safetensors"))
        state["latent_codec.h_s.0.bias"] = torch.zeros(len(state["latent_codec.h_s.0.bias"]) + 1)
        save_file(state, str(q2 / "model.safetensors"))
    return dst


@pytest.mark.parametrize("what", ["config", "truncated", "shape"])
def test_rate_model_load_failures_are_input_errors(osdiff_dirs, photo48x40, tmp_path, what):
    """A rate model that does not load is an InputError naming it, on encoding and on
    decoding (not stream damage), and leaves no half-loaded model behind: q1 still
    codes exactly as before."""
    from gencodec.codecs_ext import get_codec

    folder = _broken_copy(osdiff_dirs[0], tmp_path / "m", what)
    codec = get_codec("osdiff", model=str(folder))
    good = codec.encode(photo48x40, quality=1)
    with pytest.raises(InputError, match="cannot load rate model q2"):
        codec.encode(photo48x40, quality=2)
    assert codec.encode(photo48x40, quality=1) == good
    # a stream of q2 that passes the fingerprint check of this folder
    stream = get_codec("osdiff", model=str(osdiff_dirs[0])).encode(photo48x40, quality=2)
    s = container.unpack(stream)
    forged = container.pack("osdiff", s.header.width, s.header.height, s.payload,
                            codec.fingerprint_of(2))
    with pytest.raises(InputError, match="cannot load rate model q2"):
        codec.decode(forged)
    # the same files as the original's q1 (names and contents): the same stream
    assert good == get_codec("osdiff", model=str(osdiff_dirs[0])).encode(photo48x40, quality=1)


_CHILD = """
import sys, hashlib, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from gencodec import container
from gencodec.codecs_ext import get_codec
from gencodec.codecs_ext.osdiff import parse_payload
codec = get_codec("osdiff", model=sys.argv[1])
data = open(sys.argv[3], "rb").read()
s = container.unpack(data)
q, words = parse_payload(s.payload)
model = codec.model(q)  # sets the padding block of the codec
w, h = codec.padded_size(s.header.width, s.header.height)
np.save(sys.argv[4], model.decompress_latent(words, (h, w)).numpy())
again = container.unpack(codec.encode(np.load(sys.argv[5]), quality=q)).payload
sys.stdout.write(hashlib.sha256(codec.decode(data).tobytes()).hexdigest() + " "
                 + hashlib.sha256(again).hexdigest())
"""


@pytest.mark.slow
def test_cross_process_and_thread_count(codecs, stream, photo48x40, osdiff_dirs, tmp_path):
    """In fresh processes with 1 and 2 threads, a stream encoded here decodes to the
    same quantised latent (the same integer symbols; y_hat = symbols + float64 means,
    equal to 1e-12) and the same image, and the image encodes to the same payload
    (head and ANS words)."""
    from gencodec.codecs_ext.osdiff import parse_payload

    codec = codecs[0]
    f, img = tmp_path / "s.gnc", tmp_path / "img.npy"
    f.write_bytes(stream)
    np.save(img, photo48x40)
    payload = container.unpack(stream).payload
    q, words = parse_payload(payload)
    model = codec.model(q)
    w, h = codec.padded_size(photo48x40.shape[1], photo48x40.shape[0])
    assert (w, h) == (48, 48)  # the tiny model's 16-pixel block
    y_hat = model.decompress_latent(words, (h, w)).numpy()
    want = (hashlib.sha256(codec.decode(stream).tobytes()).hexdigest() + " "
            + hashlib.sha256(payload).hexdigest())
    for threads in (1, 2):
        out = tmp_path / f"y{threads}.npy"
        run = subprocess.run([sys.executable, "-c", _CHILD, str(osdiff_dirs[0]), str(threads),
                              str(f), str(out), str(img)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout == want, f"{threads} thread(s)"
        child = np.load(out)
        assert child.dtype == np.float64 and np.abs(child - y_hat).max() < 1e-12


@pytest.mark.slow
def test_cli_encode_decode(osdiff_dirs, photo48x40, tmp_path):
    from PIL import Image

    from gencodec.cli.main import main

    src, enc, dec = tmp_path / "in.png", tmp_path / "x.gnc", tmp_path / "out.png"
    Image.fromarray(photo48x40).save(src)
    assert main(["encode", str(src), "-o", str(enc), "--codec", "osdiff", "--model",
                 str(osdiff_dirs[0]), "-q", "1"]) == 0
    assert main(["decode", str(enc), "-o", str(dec), "--model", str(osdiff_dirs[0])]) == 0
    assert np.asarray(Image.open(dec)).shape == photo48x40.shape
    assert main(["decode", str(enc), "-o", str(tmp_path / "o2.png"), "--model",
                 str(osdiff_dirs[1])]) == 2  # another model: refused in one line
    assert not (tmp_path / "o2.png").exists()
