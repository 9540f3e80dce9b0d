"""What a demanding user hits: sharp images at the top quality, determinism across CPU
kernels and thread counts, progress reporting, malformed profile files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")

from gencodec import _native, rcc
from gencodec.codecs_ext import get_codec
from gencodec.diffc import bitstream
from gencodec.diffc.coder import DiffC
from gencodec.diffc.profile import Profile
from gencodec.errors import InputError


@pytest.fixture(scope="module")
def codec(profile_file):
    return get_codec("diffc", profile=str(profile_file))


def _noise(h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sharp_images_encode_at_the_highest_quality(spectral, small_profile):
    """Noise, text and hard edges carry more than k - padding bits per dimension at a low
    t; encoding used to stop with 'a chunk would get none'. Such a step is now sent
    with one chunk per dimension (a coarser sample), and the decoder replays it."""
    coder = DiffC(spectral, small_profile)
    x0 = spectral.encode_image(_noise())
    enc = coder.encode_latent(x0, small_profile.num_steps)
    assert max(s.n_chunks for s in enc.steps) == x0.size  # the cap was reached
    k_eff = small_profile.chunk_bits - small_profile.padding_bits
    assert max(s.kl_bits for s in enc.steps) > x0.size * k_eff
    x_t, _ = coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    np.testing.assert_array_equal(x_t, enc.x_t)


def test_fixed_budget_above_one_chunk_per_dimension(spectral, small_profile):
    """A fixed budget asking for more chunks than dimensions is capped the same way on
    both sides."""
    x0 = spectral.encode_image(_noise(16, 16))
    prof = small_profile.replace(budget="fixed", kl_bits=(1e6,) * small_profile.num_steps,
                                 kl_dims=x0.size)
    assert prof.fixed_chunks(0, x0.size) == x0.size
    coder = DiffC(spectral, prof)
    enc = coder.encode_latent(x0, 2)
    assert [s.n_chunks for s in enc.steps] == [x0.size] * 2
    x_t, _ = coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    np.testing.assert_array_equal(x_t, enc.x_t)


def _kernels() -> list[str]:
    best = rcc.cpu_kernel()
    return {"generic": ["generic"], "avx2": ["generic", "avx2"],
            "avx512": ["generic", "avx2", "avx512"]}[best]


def test_streams_are_identical_on_every_cpu_kernel(profile_file, photo32, monkeypatch):
    streams = set()
    for kernel in _kernels():
        monkeypatch.setenv("GENCODEC_RCC_KERNEL", kernel)
        assert rcc.cpu_kernel() == kernel
        # a fresh codec: the codec caches its last payload
        streams.add(get_codec("diffc", profile=str(profile_file)).encode(photo32, quality=8))
    assert len(streams) == 1


@pytest.mark.slow
def test_streams_are_identical_for_any_thread_count(tmp_path, profile_file, photo32):
    """OMP_NUM_THREADS is read at start-up, hence the subprocesses."""
    np.save(tmp_path / "img.npy", photo32)
    script = ("import sys, numpy as np; from gencodec.codecs_ext import get_codec; "
              "c = get_codec('diffc', profile=sys.argv[1]); "
              "sys.stdout.buffer.write(c.encode(np.load(sys.argv[2]), quality=8))")
    out = set()
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", script, str(profile_file),
                              str(tmp_path / "img.npy")], env=env, capture_output=True,
                             check=True, timeout=120)
        out.add(run.stdout)
    assert len(out) == 1


class _Counter:
    def __init__(self):
        self.n = 0

    def update(self, n: int = 1):
        self.n += n


def test_progress_gets_one_update_per_step(spectral, small_profile, photo32):
    coder = DiffC(spectral, small_profile)
    x0 = spectral.encode_image(photo32)
    bar = _Counter()
    enc = coder.encode_latent(x0, 5, progress=bar)
    assert bar.n == 5
    bar = _Counter()
    coder.replay(bitstream.read_payload(enc.payload), x0.shape, progress=bar)
    assert bar.n == 5


@pytest.mark.parametrize("change, message", [
    ({"index_model": {"type": "zipf", "exponent": "abc"}}, "exponent"),
    ({"index_model": {"type": "zipf", "exponent": float("nan")}}, "exponent"),
    ({"index_model": [1]}, "index model"),
    ({"chunk_bits": 8.5}, "chunk_bits must hold integers"),
    ({"timesteps": [999, 600.7, 400]}, "timesteps must hold integers"),
    ({"timesteps": "999"}, "timesteps must be a list"),
    (None, "not an object"),
])
def test_malformed_profile_files_are_refused(tmp_path, small_profile, change, message):
    """Wrong types used to be rounded silently (chunk_bits 8.5 -> 8), or to fail at the
    first encode with a bare ValueError / AttributeError."""
    d = small_profile.to_dict() if change is not None else [1]
    if change is not None:
        d.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=message):
        Profile.load(path)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_codec_shows_progress_on_a_terminal_only(profile_file, photo32, monkeypatch):
    """Kodak-size encodes take tens of seconds on a CPU: a bar on a terminal, nothing
    in logs and pipes."""
    for stderr, shown in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stderr)
        c = get_codec("diffc", profile=str(profile_file))
        c.decode(c.encode(photo32, quality=3))
        out = stderr.getvalue()
        assert ("DiffC encode" in out and "DiffC decode" in out) == shown, out


def test_device_option_reaches_the_pfr_coder(profile_file):
    """device=... was dropped for the spectral model: PFR silently ran on the CPU, and
    any string (device=gpu) was accepted."""
    with pytest.raises(InputError, match="device must be cpu or cuda"):
        get_codec("diffc", profile=str(profile_file), device="gpu")
    assert get_codec("diffc", profile=str(profile_file), device="cuda").backbone.device == "cuda"


@pytest.mark.cuda
@pytest.mark.skipif(_native.build_info()["cuda_devices"] == 0, reason="no CUDA device")
def test_cuda_stream_equals_cpu_stream(profile_file, photo32):
    cpu = get_codec("diffc", profile=str(profile_file))
    gpu = get_codec("diffc", profile=str(profile_file), device="cuda")
    stream = gpu.encode(photo32, quality=8)
    assert stream == cpu.encode(photo32, quality=8)
    np.testing.assert_array_equal(gpu.decode(stream), cpu.decode(stream))
