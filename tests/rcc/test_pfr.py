"""PFR on single chunks: the argmin against a numpy reference, exact decoding,
determinism, instruction-set independence and the numerics for large |mu|."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gencodec import _native, rcc

from .conftest import random_chunk

# (d, k) with 2^k * d kept small enough for the test budget; d covers 1 ... 4096,
# every residue mod 8 and the lane-group sizes, k covers 4 ... 20.
EXACTNESS_GRID = [
    (1, 4),
    (1, 20),
    (2, 12),
    (3, 18),
    (4, 8),
    (5, 16),
    (6, 12),
    (7, 4),
    (16, 14),
    (17, 10),
    (31, 13),
    (64, 16),
    (255, 12),
    (1000, 9),
    (1023, 6),
    (1024, 16),
    (4096, 4),
    (4096, 10),
]


def _reference_index(mu_q, sigma_q, mu_p, sigma_p, seed, step, chunk, k):
    """The PFR argmin with numpy: the same float32 terms, float64 sums and logs."""
    d, K = mu_q.size, 2**k
    quad = ((sigma_q - sigma_p) * (sigma_q + sigma_p) / (sigma_q * sigma_q)).astype(np.float32)
    lin = (2.0 * sigma_p * (mu_q - mu_p) / (sigma_q * sigma_q)).astype(np.float32)
    n = np.stack([rcc.candidate_normals(seed, step, chunk, j, d) for j in range(K)])
    terms = n * (quad * n + lin)  # float32, like the kernels
    log_w = 0.5 * np.cumsum(terms.astype(np.float64), axis=1)[:, -1]  # in dimension order
    log_t = np.log(_native.rcc_arrival_times(seed, step, chunk, k).astype(np.float64))
    score = log_t - log_w
    return int(np.argmin(score)), np.sort(score)[:2]


@pytest.mark.parametrize("d,k", [(1, 10), (3, 8), (4, 12), (9, 10), (130, 8)])
def test_index_is_the_reference_argmin(d, k):
    for seed in range(3):
        mu_q, sigma_q, mu_p, sigma_p = random_chunk(d, seed, kl_per_dim=4.0 / d)
        got, _ = rcc.pfr_encode_chunk(
            mu_q, sigma_q, mu_p, sigma_p, seed=seed, step=1, chunk=2, chunk_bits=k
        )
        want, best2 = _reference_index(mu_q, sigma_q, mu_p, sigma_p, seed, 1, 2, k)
        # numpy's log may differ from ours in the last bit; only a near-tie could flip.
        assert got == want or abs(best2[1] - best2[0]) < 1e-12


@pytest.mark.parametrize("d,k", EXACTNESS_GRID)
def test_decode_reproduces_the_encoder_sample(d, k):
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(d, seed=d + k, kl_per_dim=min(1.0, (k - 2) / d))
    index, z = rcc.pfr_encode_chunk(
        mu_q, sigma_q, mu_p, sigma_p, seed=k, step=3, chunk=d, chunk_bits=k
    )
    assert 0 <= index < 2**k and z.dtype == np.float32 and z.shape == (d,)
    z2 = rcc.pfr_decode_chunk(mu_p, sigma_p, index, seed=k, step=3, chunk=d, chunk_bits=k)
    assert z2.dtype == np.float32
    np.testing.assert_array_equal(z.view(np.uint32), z2.view(np.uint32))
    # The sample is candidate `index` of p's stream.
    n = rcc.candidate_normals(k, 3, d, index, d).astype(np.float64)
    np.testing.assert_array_equal(z, (mu_p + sigma_p * n).astype(np.float32))


def test_encoding_is_deterministic():
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(300, seed=4, kl_per_dim=0.04)
    runs = {
        rcc.pfr_encode_chunk(mu_q, sigma_q, mu_p, sigma_p, seed=9, step=2, chunk=1, chunk_bits=14)[
            0
        ]
        for _ in range(3)
    }
    assert len(runs) == 1
    other = rcc.pfr_encode_chunk(
        mu_q, sigma_q, mu_p, sigma_p, seed=10, step=2, chunk=1, chunk_bits=14
    )[0]
    assert other not in runs


def test_candidate_sets_are_nested():
    """The first 2^k candidates are the same for every budget, so the index for k+2
    equals the index for k whenever it is below 2^k."""
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(20, seed=5, kl_per_dim=0.1)
    idx = [
        rcc.pfr_encode_chunk(mu_q, sigma_q, mu_p, sigma_p, seed=s, step=0, chunk=0, chunk_bits=k)[0]
        for s in range(12)
        for k in (10, 12)
    ]
    for small, large in zip(idx[0::2], idx[1::2]):
        assert large == small or large >= 2**10


def _available_kernels() -> list[str]:
    best = rcc.cpu_kernel()
    return {"avx512": ["generic", "avx2", "avx512"], "avx2": ["generic", "avx2"]}.get(
        best, ["generic"]
    )


@pytest.mark.parametrize("d", [1, 6, 33, 256, 1021])
def test_instruction_sets_agree(d, monkeypatch):
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(d, seed=d, kl_per_dim=6.0 / d)
    k = 10 if d < 1000 else 6
    got = {}
    for kernel in _available_kernels():
        monkeypatch.setenv("GENCODEC_RCC_KERNEL", kernel)
        assert rcc.cpu_kernel() == kernel
        got[kernel] = [
            rcc.pfr_encode_chunk(
                mu_q, sigma_q, mu_p, sigma_p, seed=s, step=1, chunk=0, chunk_bits=k
            )[0]
            for s in range(4)
        ]
    assert len({tuple(v) for v in got.values()}) == 1, got


def test_threads_do_not_change_the_index():
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(64, seed=1, kl_per_dim=0.15)
    args = dict(seed=3, step=4, chunk=5, chunk_bits=14)
    want = rcc.pfr_encode_chunk(mu_q, sigma_q, mu_p, sigma_p, **args)[0]
    # Another process with one OpenMP thread.
    import subprocess
    import sys

    code = (
        "import numpy as np; from gencodec import rcc; "
        f"print(rcc.pfr_encode_chunk(np.array({mu_q.tolist()}), np.array({sigma_q.tolist()}), "
        f"np.array({mu_p.tolist()}), np.array({sigma_p.tolist()}), **{args!r})[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == want


def test_large_means_only_shift_the_sample():
    """The score uses (mu_p - mu_q) / sigma_q only: a common offset of 1e6 (exact in
    float64) leaves the index unchanged and only shifts the sample."""
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(50, seed=2, kl_per_dim=0.2)
    mu_q, mu_p = np.round(mu_q, 6), np.round(mu_p, 6)
    i0, z0 = rcc.pfr_encode_chunk(
        mu_q, sigma_q, mu_p, sigma_p, seed=1, step=1, chunk=1, chunk_bits=12
    )
    i1, z1 = rcc.pfr_encode_chunk(
        mu_q + 1e6, sigma_q, mu_p + 1e6, sigma_p, seed=1, step=1, chunk=1, chunk_bits=12
    )
    assert i0 == i1
    np.testing.assert_allclose(z1.astype(np.float64) - 1e6, z0, atol=0.07)  # float32 spacing at 1e6
    # float32 input gives the same code as its float64 copy.
    f32 = [np.asarray(a, dtype=np.float32) for a in (mu_q, sigma_q, mu_p, sigma_p)]
    i2, _ = rcc.pfr_encode_chunk(*f32, seed=1, step=1, chunk=1, chunk_bits=12)
    i3, _ = rcc.pfr_encode_chunk(
        *[a.astype(np.float64) for a in f32], seed=1, step=1, chunk=1, chunk_bits=12
    )
    assert i2 == i3


def test_very_informative_chunk_stays_finite():
    """KL far above the budget: the coder still returns a valid index (the sample is
    then biased, which is why encode_step sizes chunks by KL)."""
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(8, seed=3, kl_per_dim=50.0)
    index, z = rcc.pfr_encode_chunk(
        mu_q, sigma_q, mu_p, sigma_p, seed=0, step=0, chunk=0, chunk_bits=8
    )
    assert 0 <= index < 256 and np.isfinite(z).all()
