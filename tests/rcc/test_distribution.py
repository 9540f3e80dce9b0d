"""The coded samples follow q, and the index costs about KL bits (Theis & Ahmed 2022;
Li & El Gamal 2018: E[log2 N] <= KL + log2(e)/e + 1 and a Zipf code of N stays within
KL + log2(KL + 1) + O(1) bits)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import special, stats

from gencodec import rcc

ALPHA = 1e-3  # fixed significance of every distribution test here
SEEDS = 3000


CASES = [
    # (mu_q, sigma_q, mu_p, sigma_p, k): 1-D and 2-D, KL from 1 to about 6 bits.
    ([1.0], [0.5], [0.0], [1.0], 8),
    ([0.3, -1.2], [0.3, 0.7], [0.1, -0.4], [0.9, 1.1], 10),
    ([2.0, -0.5, 0.7, 0.0], [0.25, 0.4, 0.8, 0.3], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], 12),
]


def _case(case: int):
    mu_q, sigma_q, mu_p, sigma_p, k = CASES[case]
    return np.array(mu_q), np.array(sigma_q), np.array(mu_p), np.array(sigma_p), k


@functools.lru_cache(maxsize=None)
def _coded(case: int):
    """Indices and samples of CASES[case] over SEEDS seeds (shared by the tests)."""
    mu_q, sigma_q, mu_p, sigma_p, k = _case(case)
    idx, z = zip(
        *(
            rcc.pfr_encode_chunk(
                mu_q, sigma_q, mu_p, sigma_p, seed=s, step=7, chunk=0, chunk_bits=k
            )
            for s in range(SEEDS)
        )
    )
    return np.array(idx, dtype=np.int64), np.stack(z).astype(np.float64)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_samples_follow_q(case):
    mu_q, sigma_q, mu_p, sigma_p, k = _case(case)
    kl = rcc.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p)
    assert kl < k - 4  # the budget leaves room: the truncation bias is negligible
    _, z = _coded(case)
    for i in range(mu_q.size):
        x = (z[:, i] - mu_q[i]) / sigma_q[i]
        assert abs(x.mean()) < 4.0 / math.sqrt(SEEDS), i
        assert abs(x.var() - 1.0) < 5.0 * math.sqrt(2.0 / SEEDS), i
        assert stats.kstest(x, "norm").pvalue > ALPHA, i
    if mu_q.size > 1:  # dimensions stay independent
        c = np.corrcoef(z.T)[0, 1]
        assert abs(c) < 4.0 / math.sqrt(SEEDS)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_index_code_length(case):
    mu_q, sigma_q, mu_p, sigma_p, _ = _case(case)
    kl = rcc.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p)
    n = _coded(case)[0] + 1.0
    assert np.log2(n).mean() <= kl + math.log2(math.e) / math.e + 1.0
    # Zipf code of N with exponent 1 + 1/(KL + log2(e)/e + 1): length lam log2 N + log2 zeta(lam).
    lam = 1.0 + 1.0 / (kl + math.log2(math.e) / math.e + 1.0)
    code_length = lam * np.log2(n) + math.log2(special.zeta(lam))
    assert code_length.mean() <= kl + math.log2(kl + 1.0) + 5.0


def test_kl_matches_closed_form():
    mu_q, sigma_q, mu_p, sigma_p = (
        np.array([1.0, -2.0]),
        0.5,
        np.array([0.0, 0.0]),
        np.array([1.0, 2.0]),
    )
    nats = sum(
        math.log(sp / 0.5) + (0.25 + (mq - mp) ** 2) / (2 * sp**2) - 0.5
        for mq, mp, sp in zip(mu_q, mu_p, sigma_p)
    )
    assert rcc.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p) == pytest.approx(
        nats / math.log(2), rel=1e-12
    )
    assert rcc.gaussian_kl_bits(mu_p, sigma_p, mu_p, sigma_p) == 0.0


def test_step_samples_follow_q():
    """Through encode_step (permutation, several chunks): with a wide margin between
    the chunk budget and the chunk KL the truncation to 2^k candidates is negligible
    and the whole sample follows q. (With the default 2-bit padding the sample is
    only approximately q: log N spreads by about sqrt(2 KL) nats around KL.)"""
    rng = np.random.default_rng(0)
    mu_p, sigma_p = rng.normal(size=32), rng.uniform(0.8, 1.2, size=32)
    sigma_q, mu_q = 0.9 * sigma_p, mu_p + 0.7 * sigma_p * rng.normal(size=32)
    seeds = 200
    z = []
    for s in range(seeds):
        code, x = rcc.encode_step(
            mu_q, sigma_q, mu_p, sigma_p, seed=s, step=1, chunk_bits=14, padding_bits=11.0
        )
        z.append(x)
    assert code.n_chunks >= 4
    x = ((np.array(z, dtype=np.float64) - mu_q) / sigma_q).ravel()
    assert abs(x.mean()) < 4.0 / math.sqrt(x.size)
    assert abs(x.var() - 1.0) < 5.0 * math.sqrt(2.0 / x.size)
    assert stats.kstest(x, "norm").pvalue > ALPHA
