"""The whole-step native coder (one call per step) against the per-chunk reference:
the same indices and the same sample bits across dimensions, chunk sizes, chunk
counts, thread counts and kernels, and its own error paths."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gencodec import _native, rcc
from gencodec.errors import InputError

from .conftest import random_chunk

# (n_dims, chunk_bits, n_chunks): one chunk with many candidates (the candidates are
# shared across threads), a few chunks, many small chunks (the chunks are shared),
# one dimension per chunk, and chunk sizes of every residue mod 4.
GRID = [
    (1, 1, 1),
    (3, 16, 1),
    (64, 14, 1),
    (1023, 10, 2),
    (130, 8, 7),
    (4099, 8, 17),
    (1000, 8, 64),
    (999, 6, 250),
    (257, 4, 257),
    (8192, 8, 77),
]


def _step(n, seed, kl_per_dim=0.3, dtype=np.float32):
    return [a.astype(dtype) for a in random_chunk(n, seed, kl_per_dim)]


def _bits(z):
    return np.asarray(z, np.float32).view(np.uint32)


@pytest.mark.parametrize("n,k,chunks", GRID)
def test_whole_step_equals_per_chunk(n, k, chunks):
    mu_q, sigma_q, mu_p, sigma_p = _step(n, seed=n + k, kl_per_dim=min(1.0, k * chunks / n))
    args = dict(seed=2**63 + n, step=k, chunk_bits=k, n_chunks=chunks)
    code, z = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, **args)
    ref_code, ref_z = rcc.encode_step_per_chunk(mu_q, sigma_q, mu_p, sigma_p, **args)
    assert code == ref_code and code.n_chunks == chunks
    np.testing.assert_array_equal(_bits(z), _bits(ref_z))
    # threads: 1, 2, and more than the cores
    for threads in (1, 2, 3):
        idx, z_t = _native.rcc_encode_step(
            mu_q, sigma_q, mu_p, sigma_p, args["seed"], k, k, chunks, threads=threads
        )
        np.testing.assert_array_equal(idx, code.indices)
        np.testing.assert_array_equal(_bits(z_t), _bits(z))
        back = _native.rcc_decode_step(mu_p, sigma_p, idx, args["seed"], k, k, threads=threads)
        np.testing.assert_array_equal(_bits(back), _bits(z))
    decoded = rcc.decode_step(mu_p, sigma_p, code, seed=args["seed"], step=k)
    ref_decoded = rcc.decode_step_per_chunk(mu_p, sigma_p, code, seed=args["seed"], step=k)
    np.testing.assert_array_equal(_bits(decoded), _bits(z))
    np.testing.assert_array_equal(_bits(ref_decoded), _bits(z))


@pytest.mark.parametrize("shape,k", [((4, 16, 16), 12), ((3, 7), 8), ((2, 3, 5, 7), 10)])
def test_adaptive_chunk_count_equals_per_chunk(shape, k):
    mu_q, sigma_q, mu_p, sigma_p = (a.reshape(shape) for a in _step(int(np.prod(shape)), 5))
    code, z = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=9, step=1, chunk_bits=k)
    ref_code, ref_z = rcc.encode_step_per_chunk(
        mu_q, sigma_q, mu_p, sigma_p, seed=9, step=1, chunk_bits=k
    )
    assert code == ref_code and code.n_chunks > 1
    assert z.shape == shape
    np.testing.assert_array_equal(_bits(z), _bits(ref_z))


def test_float32_and_float64_inputs_agree():
    """The native call reads float32 and float64 alike (as float64)."""
    f32 = _step(777, seed=3)
    got = rcc.encode_step(*f32, seed=1, step=2, chunk_bits=8, n_chunks=20)
    mixed = [f32[0], f32[1].astype(np.float64), f32[2], f32[3].astype(np.float64)]
    assert rcc.encode_step(*mixed, seed=1, step=2, chunk_bits=8, n_chunks=20)[0] == got[0]
    f64 = [a.astype(np.float64) for a in f32]
    code, z = rcc.encode_step(*f64, seed=1, step=2, chunk_bits=8, n_chunks=20)
    assert code == got[0]
    np.testing.assert_array_equal(z, got[1])


def test_kl_is_the_numpy_formula_and_independent_of_threads():
    mu_q, sigma_q, mu_p, sigma_p = _step(100_003, seed=4, kl_per_dim=0.05, dtype=np.float64)
    want = rcc._kl_bits_per_dim(mu_q, sigma_q, mu_p, sigma_p).sum()
    got = {_native.rcc_kl_bits(mu_q, sigma_q, mu_p, sigma_p, threads=t) for t in (1, 2, 5)}
    assert len(got) == 1
    assert got.pop() == pytest.approx(want, rel=1e-12)


def test_kl_with_repeated_sigmas_is_the_numpy_formula():
    # DiffC's sigmas are one value per step (the native sum reuses the sigma term while
    # the pair repeats); runs of repeats, changes and a float32 input.
    n = 70_001
    mu_q, _, mu_p, _ = _step(n, seed=9, kl_per_dim=0.05, dtype=np.float64)
    runs = np.repeat(np.array([0.9, 0.7, 0.9, 1.3]), [30_000, 1, 20_000, 20_000])
    for sigma_q, sigma_p in [
        (np.full(n, 0.8), np.full(n, 1.1)),
        (runs, np.full(n, 1.0)),
        (runs.astype(np.float32), runs[::-1].copy()),
    ]:
        want = rcc._kl_bits_per_dim(mu_q, sigma_q.astype(np.float64), mu_p, sigma_p).sum()
        got = {_native.rcc_kl_bits(mu_q, sigma_q, mu_p, sigma_p, threads=t) for t in (1, 2, 3)}
        assert len(got) == 1
        assert got.pop() == pytest.approx(want, rel=1e-12)


def test_unpickled_arrays_are_accepted():
    # Unpickled arrays carry dtype objects of their own (equal to, not the same as,
    # numpy's); the native layer compares dtypes by equality.
    args = _step(999, seed=8)
    code, z = rcc.encode_step(*args, seed=5, step=2, chunk_bits=8, n_chunks=30)
    copies = [pickle.loads(pickle.dumps(a)) for a in args]
    assert copies[0].dtype is not np.dtype(np.float32)  # what the test is about
    got, z2 = rcc.encode_step(*copies, seed=5, step=2, chunk_bits=8, n_chunks=30)
    assert got == code
    np.testing.assert_array_equal(_bits(z2), _bits(z))
    idx = pickle.loads(pickle.dumps(code.indices.copy()))
    back = _native.rcc_decode_step(copies[2], copies[3], idx, 5, 2, 8)
    np.testing.assert_array_equal(_bits(back), _bits(z))


def test_instruction_sets_agree_on_a_step(monkeypatch):
    args = _step(1500, seed=6)
    got = set()
    for kernel in {"avx512": ["generic", "avx2", "avx512"], "avx2": ["generic", "avx2"]}.get(
        rcc.cpu_kernel(), ["generic"]
    ):
        monkeypatch.setenv("GENCODEC_RCC_KERNEL", kernel)
        code, z = rcc.encode_step(*args, seed=3, step=0, chunk_bits=8, n_chunks=40)
        got.add((code.indices.tobytes(), z.tobytes()))
    assert len(got) == 1


NATIVE_ERRORS = [
    (dict(mu_q=np.zeros(4, np.int64)), "mu_q must be a 1-D contiguous float32 or float64"),
    (dict(sigma_q=np.ones(5)), "sigma_q must be a 1-D contiguous float32 or float64 array of "
                               "length 4"),
    (dict(mu_p=np.zeros((2, 2))), "mu_p must be a 1-D contiguous"),
    (dict(sigma_p=np.ones(8)[::2]), "sigma_p must be a 1-D contiguous"),
    (dict(mu_q=np.array([0.0, 0.0, np.nan, 0.0])), r"mu_q\[2\] = nan"),
    (dict(sigma_q=np.array([1.0, 1.0, 1.0, -1.0])), r"sigma_q\[3\] = -1 \(must be finite and > 0"),
    (dict(mu_p=np.array([0.0, 1e38, 0.0, 0.0])), r"mu_p\[1\] = 1e\+38 \(must be finite, \|x\|"),
    (dict(sigma_q=np.array([1.0, 1e-30, 1.0, 1.0])), "too far from p .* at index 1"),
    (dict(n_chunks=0), "cannot split 4 dimensions into 0 chunks"),
    (dict(n_chunks=5), "cannot split 4 dimensions into 5 chunks"),
    (dict(chunk_bits=25), r"chunk_bits must be in \[1, 24\], got 25"),
    (dict(device="tpu"), "device must be 'cpu' or 'cuda'"),
]


@pytest.mark.parametrize("override,message", NATIVE_ERRORS)
def test_native_step_rejects_bad_input(override, message):
    args = dict(mu_q=np.full(4, 0.1), sigma_q=np.full(4, 0.9), mu_p=np.zeros(4),
                sigma_p=np.ones(4), seed=0, step=0, chunk_bits=8, n_chunks=2, device="cpu")
    args.update(override)
    with pytest.raises(ValueError, match=message):
        _native.rcc_encode_step(**args)


def test_native_decode_step_rejects_bad_input():
    ok = np.zeros(6), np.ones(6)
    with pytest.raises(ValueError, match="index 256 of chunk 1 does not fit in 8 bits"):
        _native.rcc_decode_step(*ok, np.array([0, 256], np.uint32), 0, 0, 8)
    with pytest.raises(ValueError, match="indices must be a 1-D contiguous uint32"):
        _native.rcc_decode_step(*ok, np.array([0, 1], np.int64), 0, 0, 8)
    with pytest.raises(ValueError, match="cannot split 6 dimensions into 7 chunks"):
        _native.rcc_decode_step(*ok, np.zeros(7, np.uint32), 0, 0, 8)
    with pytest.raises(ValueError, match=r"sigma_p\[2\] = 0"):
        _native.rcc_decode_step(ok[0], np.array([1.0, 1, 0, 1, 1, 1]), np.zeros(2, np.uint32),
                                0, 0, 8)


def test_refusals_name_the_problem_like_the_numpy_checks():
    """A value the native pass refuses is reported by the numpy checks' message."""
    mu_q = np.zeros(6)
    mu_q[4] = np.inf
    with pytest.raises(InputError, match=r"mu_q has 1 non-finite values \(first at flat index 4"):
        rcc.encode_step(mu_q, 1.0, np.zeros(6), 1.0, seed=0, step=0, chunk_bits=8)
    with pytest.raises(InputError, match=r"mu_q has 1 non-finite values"):
        rcc.gaussian_kl_bits(mu_q, 1.0, np.zeros(6), 1.0)
    with pytest.raises(InputError, match="sigma_p must be > 0, got 0.0 at flat index 5"):
        rcc.decode_step(np.zeros(6), np.array([1.0] * 5 + [0.0]), rcc.StepCode([1, 2], 4),
                        seed=0, step=0)
