"""Edge cases of the rcc API: size and bit limits, extreme Gaussians, malformed
arguments. Each used to crash, return garbage silently or raise a bare ValueError."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gencodec import rcc
from gencodec.errors import InputError

KW = dict(seed=3, step=1, chunk=2)


@pytest.mark.parametrize("k", [1, 24])
def test_bit_limits_round_trip_in_one_dimension(k):
    index, z = rcc.pfr_encode_chunk([0.4], [0.7], [0.0], [1.0], chunk_bits=k, **KW)
    assert 0 <= index < 2**k
    assert rcc.pfr_decode_chunk([0.0], [1.0], index, chunk_bits=k, **KW)[0] == z[0]


def test_zero_kl_round_trips():
    """q == p: every index is as good; the one picked still decodes to its sample."""
    mu = np.linspace(-2, 2, 9)
    assert rcc.gaussian_kl_bits(mu, 0.5, mu, 0.5) == 0.0
    code, z = rcc.encode_step(mu, 0.5, mu, 0.5, seed=1, step=0, chunk_bits=4)
    assert code.n_chunks == 1
    np.testing.assert_array_equal(rcc.decode_step(mu, 0.5, code, seed=1, step=0), z)


def test_near_delta_q_picks_the_closest_candidate():
    """A q much narrower than p (sigma ratio 1e6) is still scored correctly: PFR then
    picks the candidate nearest mu_q."""
    k = 8
    index, z = rcc.pfr_encode_chunk([0.5], [1e-6], [0.0], [1.0], chunk_bits=k, **KW)
    cands = [rcc.pfr_decode_chunk([0.0], [1.0], j, chunk_bits=k, **KW)[0] for j in range(2**k)]
    assert index == int(np.argmin(np.abs(np.array(cands) - 0.5)))


@pytest.mark.parametrize("sigma_q, mu_q", [(1e-30, 0.5), (5e-324, 0.5), (1.0, 1e37)])
def test_float32_score_overflow_is_refused(sigma_q, mu_q):
    """Beyond float32 every candidate scored +inf and index 0 came back silently. (A
    mean shift of 2^64 sigma no longer overflows: the score drops the -b^2 terms.)"""
    with pytest.raises(InputError, match="too far from p"):
        rcc.pfr_encode_chunk([mu_q], [sigma_q], [0.0], [1.0], chunk_bits=8, **KW)
    with pytest.raises(InputError, match="too far from p"):
        rcc.encode_step([mu_q] * 4, sigma_q, [0.0] * 4, 1.0, seed=0, step=0, n_chunks=4)


def test_values_beyond_float32_are_refused():
    """mu_p = 1e300 decoded to an inf sample without a word."""
    with pytest.raises(InputError, match="too large for float32"):
        rcc.pfr_decode_chunk([1e300], [1.0], 0, chunk_bits=8, **KW)
    with pytest.raises(InputError, match="sigma_p has values too large"):
        rcc.decode_step([0.0], 1e300, rcc.StepCode([0], 8), seed=0, step=0)


def test_kl_of_a_tiny_sigma_ratio_is_finite():
    """log1p(r - 1) rounds to log(0) for r = 1e-200: the KL was inf, not 664 bits."""
    for r in (1e-200, 1e-10, 0.3, 1.0, 1.5, 1e10):
        want = 0.5 * (r * r - 1 - 2 * math.log(r)) / math.log(2)
        assert rcc.gaussian_kl_bits([0.0], [r], [0.0], [1.0]) == pytest.approx(want, rel=1e-12)


def test_normal_counters_past_2_64_are_refused():
    """The native layer returned uninitialised memory when the counters wrapped."""
    with pytest.raises(InputError, match="2\\*\\*64"):
        rcc.philox_normals(0, 0, 0, 2**64 - 2, 5)
    assert rcc.philox_normals(0, 0, 0, 2**64 - 4, 4).shape == (4,)


def test_native_normals_refuse_counters_past_2_64():
    """The native entry point checks too (it wrote nothing into the array before)."""
    from gencodec import _native

    with pytest.raises(ValueError, match="2\\^64"):
        _native.rcc_normals(0, 0, 0, 2**64 - 2, 5, "cpu")
    last = _native.rcc_normals(0, 0, 0, 2**64 - 2, 2, "cpu")
    assert np.array_equal(last, rcc.philox_normals(0, 0, 0, 2**64 - 4, 4)[2:])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rcc.pfr_encode_chunk([[1.0], [1.0, 2.0]], 1.0, [0.0], 1.0, chunk_bits=8, **KW),
         "not an array of numbers"),
        (lambda: rcc.encode_step(np.zeros(8), 1.0, np.zeros(8), 1.0, seed=0, step=0,
                                 n_chunks=2.7), "n_chunks must be an integer"),
        (lambda: rcc.encode_step(np.zeros(8), 1.0, np.zeros(8), 1.0, seed=0, step=0,
                                 n_chunks="3"), "n_chunks must be an integer"),
        (lambda: rcc.encode_step(np.zeros(8), 1.0, np.zeros(8), 1.0, seed=0, step=0,
                                 padding_bits="x"), "padding_bits must be a number"),
        (lambda: rcc.permutation(-1, 0, 0), "permutation size"),
    ],
)
def test_malformed_arguments_raise_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_input_layouts_give_the_same_code():
    """Non-contiguous, float32, float64 and integer inputs are read alike (the means
    are whole numbers, exact in every type)."""
    rng = np.random.default_rng(0)
    mu_q = np.round(rng.normal(size=(6, 10)) * 4)
    big = np.zeros((6, 20))
    big[:, ::2] = mu_q
    mu_p = np.zeros((6, 10), np.int64)
    ref = rcc.encode_step(mu_q, 7.0, mu_p, 8, seed=4, step=2, chunk_bits=6)
    assert ref[0].n_chunks > 1
    for mq in (big[:, ::2], mu_q.astype(np.float32), mu_q.astype(np.int32), mu_q.T.T):
        code, z = rcc.encode_step(mq, np.float32(7), mu_p, 8, seed=4, step=2, chunk_bits=6)
        assert code == ref[0]
        np.testing.assert_array_equal(z, ref[1])
