"""Shared randomness: Philox4x32-10, the key derivation, the normal and exponential
transforms and the permutation. The golden vectors pin the bitstream format: if one of
them changes, every coded index changes with it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

from gencodec import _native, rcc

# Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32_10).
RANDOM123_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", RANDOM123_KAT)
def test_philox_matches_random123(counter, key, expected):
    assert _native.philox4x32_10(list(counter), list(key)) == expected


def test_golden_keys():
    assert rcc.rcc_key(0, 0, 0) == 0x238275BC38FCBE91
    assert rcc.rcc_key(2**64 - 1, 7, 123) == 0xE6EE080E3F4B7C1A


def test_golden_normals():
    # Counters straddle 2^40 (64-bit counters, unaligned start).
    got = rcc.philox_normals(12345, 6, 7, 2**40 - 3, 8).view(np.uint32)
    want = [
        0xBEE55BBC,
        0xBE48482F,
        0x3F354E55,
        0x3DC6B9A5,
        0xBFE0596B,
        0x3F1095A9,
        0xBEB46479,
        0xBF14C39B,
    ]
    assert got.tolist() == want


def test_golden_arrivals_and_permutation():
    assert _native.rcc_arrival_times(1, 2, 3, 4).tolist() == [
        13523680256,
        15429568768,
        18628048640,
        22550786304,
        30520087808,
        38933931776,
        40131576064,
        47567420672,
        53475120896,
        60269728512,
        63707654656,
        67242003200,
        69267759616,
        79028311552,
        80221700352,
        83163230720,
    ]
    assert rcc.permutation(10, 99, 5).tolist() == [3, 5, 1, 4, 6, 0, 7, 8, 9, 2]


def test_golden_codes():
    mu_q, sigma_q = np.linspace(-1, 1, 37), np.full(37, 0.8)
    mu_p, sigma_p = np.zeros(37), np.ones(37)
    got = [
        rcc.pfr_encode_chunk(
            mu_q, sigma_q, mu_p, sigma_p, seed=2024, step=11, chunk=5, chunk_bits=k
        )[0]
        for k in (4, 10, 16)
    ]
    assert got == [6, 570, 570]
    mu_p = np.sin(np.arange(300.0))
    mu_q = mu_p + 0.3 * np.cos(np.arange(300.0))
    code, z = rcc.encode_step(mu_q, 0.7, mu_p, 0.75, seed=31337, step=42, chunk_bits=12)
    assert code.indices.tolist() == [2, 240]
    assert z[:4].view(np.uint32).tolist() == [0xBE544522, 0x3FC6E526, 0x3F9ACF01, 0xBF2C7576]


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_golden_digests():
    """Every value of longer streams, through their SHA-256 (little-endian bytes)."""
    normals = rcc.philox_normals(77, 3, 9, 1, 100_003).astype("<f4")
    assert _sha256(normals) == "c4070448bed1e4047133a603cd5c077ab517b2268934a9960ee1ce29d8305add"
    arrivals = _native.rcc_arrival_times(77, 3, 9, 14).astype("<u8")
    assert _sha256(arrivals) == "411ee2fa3f5313d9d979d9f27b2c87d6371a1a6f2f9d06959a24fa879c9ce7ee"
    perm = rcc.permutation(10_000, 77, 3).astype("<i8")
    assert _sha256(perm) == "8b828b2c2015768f88334c45e6e94d950fa7fa63d1267ca37760c9fbe2d1a4fa"


def _box_muller_reference(words: np.ndarray) -> np.ndarray:
    """Box-Muller in float64 with numpy's log/sin/cos, on the documented uniforms."""
    u = ((words[:, 0::2] >> 9).astype(np.float64) + 0.5) / 2.0**23
    a = (words[:, 1::2].astype(np.float64) + 0.5) / 2.0**32
    r = np.sqrt(-2.0 * np.log(u))
    out = np.empty(words.shape, dtype=np.float64)
    out[:, 0::2] = r * np.cos(2 * np.pi * a)
    out[:, 1::2] = r * np.sin(2 * np.pi * a)
    return out.ravel()


def test_normals_are_box_muller_of_the_philox_words():
    seed, step, chunk = 5, 9, 2
    key = rcc.rcc_key(seed, step, chunk)
    k = [key & 0xFFFFFFFF, key >> 32]
    blocks = np.array(
        [_native.philox4x32_10([b, 0, 0, 0], k) for b in range(2000)], dtype=np.uint64
    )
    want = _box_muller_reference(blocks)
    got = rcc.philox_normals(seed, step, chunk, 0, 8000).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_normals_are_standard_normal():
    x = rcc.philox_normals(1, 2, 3, 0, 400_000).astype(np.float64)
    assert abs(x.mean()) < 4.0 / np.sqrt(x.size)
    assert abs(x.var() - 1.0) < 4.0 * np.sqrt(2.0 / x.size)
    assert stats.kstest(x, "norm").pvalue > 1e-3
    # Different streams are uncorrelated.
    y = rcc.philox_normals(1, 2, 4, 0, 400_000).astype(np.float64)
    assert abs(np.corrcoef(x, y)[0, 1]) < 4.0 / np.sqrt(x.size)


def test_normals_are_counter_addressed():
    whole = rcc.philox_normals(8, 1, 0, 0, 1000)
    for start, count in [(0, 1), (3, 5), (997, 3), (401, 250)]:
        np.testing.assert_array_equal(
            rcc.philox_normals(8, 1, 0, start, count), whole[start : start + count]
        )


def _kernels() -> list[str]:
    return {"avx512": ["generic", "avx2", "avx512"], "avx2": ["generic", "avx2"]}.get(
        rcc.cpu_kernel(), ["generic"]
    )


# Counts below, at and above a lane group, and above the 2^16 normals of one parallel
# piece; starts inside a block and past 2^32 blocks.
NORMAL_RANGES = [(0, 1), (1, 3), (6, 129), (2**34 + 3, 1000), (5, 70_001), (0, 2 * 65_536 + 7)]


@pytest.mark.parametrize("start,count", NORMAL_RANGES)
def test_normals_agree_across_kernels_and_ranges(start, count, monkeypatch):
    got = []
    for kernel in _kernels():
        monkeypatch.setenv("GENCODEC_RCC_KERNEL", kernel)
        got.append(rcc.philox_normals(9, 4, 1, start, count).view(np.uint32))
        # the same counters drawn in two pieces
        cut = count // 3
        parts = [
            rcc.philox_normals(9, 4, 1, start, cut),
            rcc.philox_normals(9, 4, 1, start + cut, count - cut),
        ]
        np.testing.assert_array_equal(np.concatenate(parts).view(np.uint32), got[-1])
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])


def test_permutation_agrees_across_kernels(monkeypatch):
    got = []
    for kernel in _kernels():
        monkeypatch.setenv("GENCODEC_RCC_KERNEL", kernel)
        got.append([rcc.permutation(n, 11, 2) for n in (1, 2, 3, 513, 1025, 100_003)])
    for other in got[1:]:
        for a, b in zip(other, got[0]):
            np.testing.assert_array_equal(a, b)


def test_exponentials_are_exp1():
    t = _native.rcc_arrival_times(3, 1, 4, 16).astype(np.float64) / 2.0**32
    e = np.diff(np.concatenate([[0.0], t]))
    assert abs(e.mean() - 1.0) < 4.0 / np.sqrt(e.size)
    assert stats.kstest(e, "expon").pvalue > 1e-3


def test_permutation_is_a_permutation():
    for n in (0, 1, 2, 7, 1000, 65_537):
        p = rcc.permutation(n, 3, 4)
        assert np.array_equal(np.sort(p), np.arange(n))
    assert not np.array_equal(rcc.permutation(1000, 3, 4), rcc.permutation(1000, 3, 5))
    # Every position is uniform: position 0 over many steps.
    first = np.array([rcc.permutation(8, 1, s)[0] for s in range(4000)])
    assert stats.chisquare(np.bincount(first, minlength=8)).pvalue > 1e-3
