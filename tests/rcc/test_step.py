"""Whole steps: chunking, the StepCode contract, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from gencodec import rcc
from gencodec.errors import InputError

from .conftest import random_chunk


def _step(shape, seed, kl_per_dim):
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(int(np.prod(shape)), seed, kl_per_dim)
    return [a.reshape(shape).astype(np.float32) for a in (mu_q, sigma_q, mu_p, sigma_p)]


@pytest.mark.parametrize("shape,k", [((4, 16, 16), 12), ((3, 7), 8), ((1,), 6), ((2, 3, 5, 7), 16)])
def test_round_trip(shape, k):
    mu_q, sigma_q, mu_p, sigma_p = _step(shape, seed=len(shape), kl_per_dim=0.3)
    code, z = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=2**64 - 1, step=5, chunk_bits=k)
    kl = rcc.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p)
    assert code.n_chunks == max(1, int(np.ceil(kl / (k - 2.0))))
    assert code.bits() == code.n_chunks * k and code.chunk_bits == k
    assert code.indices.dtype == np.uint32 and (code.indices < 2**k).all()
    assert z.shape == shape and z.dtype == np.float32
    z2 = rcc.decode_step(mu_p, sigma_p, code, seed=2**64 - 1, step=5)
    np.testing.assert_array_equal(z.view(np.uint32), z2.view(np.uint32))
    again, z3 = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=2**64 - 1, step=5, chunk_bits=k)
    assert again == code and hash(again) == hash(code)
    np.testing.assert_array_equal(z, z3)


def test_chunks_carry_about_equal_kl():
    mu_q, sigma_q, mu_p, sigma_p = _step((4, 32, 32), seed=1, kl_per_dim=0.05)
    kl_dim = rcc._kl_bits_per_dim(
        *(np.ravel(a).astype(np.float64) for a in (mu_q, sigma_q, mu_p, sigma_p))
    )
    n = rcc.n_chunks_for(kl_dim.sum(), 16)
    bounds = rcc.chunk_bounds(kl_dim.size, n)
    perm = rcc.permutation(kl_dim.size, 3, 1)
    per_chunk = [kl_dim[perm[a:b]].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert max(per_chunk) <= 14.0 * 1.15 and np.diff(bounds).max() - np.diff(bounds).min() <= 1


def test_padding_is_configurable():
    mu_q, sigma_q, mu_p, sigma_p = _step((256,), seed=2, kl_per_dim=0.2)
    c0, _ = rcc.encode_step(
        mu_q, sigma_q, mu_p, sigma_p, seed=1, step=0, chunk_bits=10, padding_bits=0.0
    )
    c4, _ = rcc.encode_step(
        mu_q, sigma_q, mu_p, sigma_p, seed=1, step=0, chunk_bits=10, padding_bits=4.0
    )
    kl = rcc.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p)
    assert c0.n_chunks == int(np.ceil(kl / 10)) and c4.n_chunks == int(np.ceil(kl / 6))


def test_sigma_scalars_broadcast():
    mu_q, _, mu_p, _ = _step((8, 8), seed=3, kl_per_dim=0.1)
    code, z = rcc.encode_step(mu_q, 0.9, mu_p, np.float32(1.0), seed=0, step=0, chunk_bits=8)
    code2, z2 = rcc.encode_step(
        mu_q, np.full((8, 8), 0.9), mu_p, np.ones((1, 8)), seed=0, step=0, chunk_bits=8
    )
    assert code == code2 and np.array_equal(z, z2)


def test_too_much_information_for_the_dimensions():
    mu_q, sigma_q, mu_p, sigma_p = _step((3,), seed=4, kl_per_dim=40.0)
    with pytest.raises(InputError, match=r"needs \d+ chunks .* only 3 dimensions"):
        rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=0, step=0, chunk_bits=8)
    with pytest.raises(InputError, match="4 chunks"):
        rcc.decode_step(mu_p, sigma_p, rcc.StepCode(np.zeros(4, np.uint32), 8), seed=0, step=0)
    with pytest.raises(InputError, match="every chunk needs at least 1 dimension"):
        rcc.chunk_bounds(3, 4)


BAD_INPUTS = [
    (dict(mu_q=np.array([0.0, np.nan])), "mu_q has 1 non-finite"),
    (dict(sigma_p=np.array([1.0, np.inf])), "sigma_p has 1 non-finite"),
    (dict(sigma_q=np.array([1.0, 0.0])), "sigma_q must be > 0, got 0.0 at flat index 1"),
    (dict(sigma_p=-1.0), "sigma_p must be > 0"),
    (dict(mu_q=np.zeros(3)), r"mu_q has shape \(3,\) but mu_p has shape \(2,\)"),
    (dict(sigma_q=np.ones(3)), r"sigma_q of shape \(3,\) does not broadcast"),
    (dict(mu_q=np.array(["a", "b"])), "real float array"),
    (dict(mu_q=np.zeros(0), mu_p=np.zeros(0)), "empty"),
    (dict(chunk_bits=0), r"chunk_bits must be in \[1, 24\], got 0"),
    (dict(chunk_bits=25), r"chunk_bits must be in \[1, 24\], got 25"),
    (dict(chunk_bits=8.0), "chunk_bits must be an integer"),
    (dict(padding_bits=8.0, chunk_bits=8), r"padding_bits must be in \[0, chunk_bits=8\)"),
    (dict(seed=-1), r"seed must be in \[0, 2\*\*64\)"),
    (dict(seed=2**64), r"seed must be in \[0, 2\*\*64\)"),
    (dict(step=1.5), "step must be an integer"),
    (dict(device="tpu"), "device must be one of"),
]


@pytest.mark.parametrize("override,message", BAD_INPUTS)
def test_bad_input_is_rejected(override, message):
    args = dict(
        mu_q=np.array([0.1, 0.2]),
        sigma_q=0.9,
        mu_p=np.zeros(2),
        sigma_p=1.0,
        seed=0,
        step=0,
        chunk_bits=8,
    )
    args.update(override)
    with pytest.raises(InputError, match=message):
        rcc.encode_step(**args)
    assert issubclass(InputError, ValueError)


def test_bad_codes_are_rejected():
    with pytest.raises(
        InputError, match=r"indices must lie in \[0, 2\*\*4\), got min 0 and max 16"
    ):
        rcc.StepCode(np.array([0, 16]), 4)
    with pytest.raises(InputError, match="non-empty 1-D"):
        rcc.StepCode(np.zeros((2, 2), np.uint32), 4)
    with pytest.raises(InputError, match="chunk_bits must be in"):
        rcc.StepCode(np.zeros(2, np.uint32), 30)
    with pytest.raises(InputError, match="index 256 does not fit in chunk_bits=8"):
        rcc.pfr_decode_chunk(np.zeros(2), 1.0, 256, seed=0, step=0, chunk=0, chunk_bits=8)
    with pytest.raises(InputError, match="code must be a StepCode"):
        rcc.decode_step(np.zeros(2), 1.0, [1, 2], seed=0, step=0)


def test_native_layer_rejects_bad_input_too():
    from gencodec import _native

    ok = np.zeros(2), np.ones(2), np.zeros(2), np.ones(2)
    with pytest.raises(ValueError, match=r"sigma_q\[1\] = -1"):
        _native.rcc_encode_chunk(ok[0], np.array([1.0, -1.0]), ok[2], ok[3], 0, 0, 0, 8)
    with pytest.raises(ValueError, match="mu_p must be 1-D of length 2"):
        _native.rcc_encode_chunk(ok[0], ok[1], np.zeros(3), ok[3], 0, 0, 0, 8)
    with pytest.raises(ValueError, match=r"chunk_bits must be in \[1, 24\], got 31"):
        _native.rcc_encode_chunk(*ok, 0, 0, 0, 31)


def test_step_code_is_immutable():
    code = rcc.StepCode(np.array([1, 2, 3]), 4)
    with pytest.raises(ValueError):
        code.indices[0] = 5
    with pytest.raises(AttributeError):
        code.chunk_bits = 5


def test_fixed_chunk_count_overrides_the_kl():
    """A fixed budget (n_chunks) sets the chunk count whatever the step's KL, and the
    decoder replays it from the indices alone."""
    rng = np.random.default_rng(7)
    mu_q = rng.normal(size=500).astype(np.float32)
    adaptive, _ = rcc.encode_step(mu_q, 0.5, np.zeros(500, np.float32), 1.0, seed=3, step=1,
                                  chunk_bits=10)
    for n in (1, adaptive.n_chunks + 5):
        code, sample = rcc.encode_step(mu_q, 0.5, np.zeros(500, np.float32), 1.0, seed=3,
                                       step=1, chunk_bits=10, n_chunks=n)
        assert code.n_chunks == n
        back = rcc.decode_step(np.zeros(500, np.float32), 1.0, code, seed=3, step=1)
        assert np.array_equal(back, sample)
    with pytest.raises(InputError, match="n_chunks"):
        rcc.encode_step(mu_q, 0.5, np.zeros(500, np.float32), 1.0, seed=3, step=1, n_chunks=0)
    with pytest.raises(InputError, match="only 500 dimensions"):
        rcc.encode_step(mu_q, 0.5, np.zeros(500, np.float32), 1.0, seed=3, step=1, n_chunks=501)
