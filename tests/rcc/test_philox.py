"""Shared randomness (PFR format 2): Philox4x32-7, the key derivation, the quantile
table of the normals, the exponentials and the permutation. The golden vectors pin the
bitstream format: if one of them changes, every coded index changes with it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import special, stats

from gencodec import _native, rcc
from gencodec.errors import InputError

# Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 7 and 10).
RANDOM123_KAT = [
    (7, (0, 0, 0, 0), (0, 0), (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
    (7, (0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662)),
    (
        7,
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A),
    ),
    (10, (0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (10, (0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        10,
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("rounds,counter,key,expected", RANDOM123_KAT)
def test_philox_matches_random123(rounds, counter, key, expected):
    assert _native.philox4x32(list(counter), list(key), rounds) == expected


def test_the_format_uses_philox_7():
    assert _native.RCC_PHILOX_ROUNDS == 7 and rcc.FORMAT_VERSION == 2
    assert _native.philox4x32([1, 2, 3, 4], [5, 6]) == _native.philox4x32([1, 2, 3, 4], [5, 6], 7)
    with pytest.raises(ValueError, match="7 or 10"):
        _native.philox4x32([0, 0, 0, 0], [0, 0], 8)


def test_golden_keys():
    assert rcc.rcc_key(0, 0, 0) == 0x238275BC38FCBE91
    assert rcc.rcc_key(2**64 - 1, 7, 123) == 0xE6EE080E3F4B7C1A


def test_golden_normals():
    # Counters straddle 2^40 (64-bit counters, unaligned start).
    got = rcc.philox_normals(12345, 6, 7, 2**40 - 3, 8).view(np.uint32)
    want = [
        0x3F077E31,
        0x3DAA7DA3,
        0xBF209757,
        0xBF089351,
        0xBF4492F7,
        0x3F30404B,
        0xBCE0FF88,
        0x3E084EC7,
    ]
    assert got.tolist() == want


def test_golden_arrivals_and_permutation():
    assert _native.rcc_arrival_times(1, 2, 3, 4).tolist() == [
        2701657600,
        5879108352,
        14406365440,
        15631796608,
        19880826240,
        24239212928,
        25472690816,
        35684121216,
        41608399488,
        42361035200,
        42563605824,
        42707454432,
        56220289504,
        56737750080,
        58503732416,
        61973162688,
    ]
    assert rcc.permutation(10, 99, 5).tolist() == [4, 0, 6, 9, 2, 1, 5, 8, 7, 3]


def test_golden_codes():
    mu_q, sigma_q = np.linspace(-1, 1, 37), np.full(37, 0.8)
    mu_p, sigma_p = np.zeros(37), np.ones(37)
    got = [
        rcc.pfr_encode_chunk(
            mu_q, sigma_q, mu_p, sigma_p, seed=2024, step=11, chunk=5, chunk_bits=k
        )[0]
        for k in (4, 10, 16)
    ]
    assert got == [7, 78, 78]
    mu_p = np.sin(np.arange(300.0))
    mu_q = mu_p + 0.3 * np.cos(np.arange(300.0))
    code, z = rcc.encode_step(mu_q, 0.7, mu_p, 0.75, seed=31337, step=42, chunk_bits=12)
    assert code.indices.tolist() == [226, 919]
    assert z[:4].view(np.uint32).tolist() == [0xBF080CCC, 0x3F729355, 0x3F559C5F, 0xBFB11A9E]


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_golden_digests():
    """Every value of longer streams, through their SHA-256 (little-endian bytes)."""
    normals = rcc.philox_normals(77, 3, 9, 1, 100_003).astype("<f4")
    assert _sha256(normals) == "5693cc10a1dce86fb12beefe522e1921e16e47216c5e1a5d56a8926b9193ddf2"
    arrivals = _native.rcc_arrival_times(77, 3, 9, 14).astype("<u8")
    assert _sha256(arrivals) == "90976b41355079a3d7808373bd9f90d984c1a56719cdcd8935e41813395fa8b8"
    perm = rcc.permutation(10_000, 77, 3).astype("<i8")
    assert _sha256(perm) == "86d19f45bce13effdaf7a383ff308050ae18171d11208606b9527e0462e77478"
    table = _native.rcc_normal_table().astype("<f4")
    assert _sha256(table) == "912af8417cf96b0f825d2430dba32390df37553b5bacf6dfab9b3197f532c12f"


def test_the_table_is_the_normal_quantile_function():
    """Entry i is Phi^-1((i + 1/2) / 2^14) correctly rounded to float32 (scipy's ndtri
    in float64 as the reference), antisymmetric, so the normals have mean exactly 0
    and variance within 8.1e-5 of 1."""
    table = _native.rcc_normal_table()
    assert table.dtype == np.float32 and table.shape == (2**14,)
    want = special.ndtri((np.arange(2**14) + 0.5) / 2**14)
    np.testing.assert_array_equal(table, want.astype(np.float32))
    assert np.array_equal(table, -table[::-1]) and np.all(np.diff(table) > 0)
    t = table.astype(np.float64)
    assert t.mean() == 0.0 and abs((t * t).mean() - 1.0) < 8.1e-5
    assert 4.008 < t.max() < 4.009


def _table_reference(words: np.ndarray) -> np.ndarray:
    """Normals 8b ... 8b+7 of block b from its four words: the low 14 bits of the low
    half, then of the high half."""
    table = _native.rcc_normal_table()
    halves = np.stack([words & 0x3FFF, (words >> 16) & 0x3FFF], axis=-1)  # (blocks, 4, 2)
    return table[halves.reshape(len(words), 8)].ravel()


def test_normals_are_table_entries_of_the_philox_words():
    seed, step, chunk = 5, 9, 2
    key = rcc.rcc_key(seed, step, chunk)
    k = [key & 0xFFFFFFFF, key >> 32]
    blocks = np.array([_native.philox4x32([b, 0, 0, 0], k) for b in range(2000)], dtype=np.uint64)
    want = _table_reference(blocks)
    got = rcc.philox_normals(seed, step, chunk, 0, 16_000)
    np.testing.assert_array_equal(got, want)


def test_candidates_have_rows_of_their_own():
    """Candidate j's normals are blocks j * 2^32 + t (counter {t, j, 0, 0})."""
    key = rcc.rcc_key(3, 1, 4)
    k = [key & 0xFFFFFFFF, key >> 32]
    for j, d in [(0, 5), (1, 8), (77, 19), (2**24 - 1, 3)]:
        blocks = np.array(
            [_native.philox4x32([t, j, 0, 0], k) for t in range((d + 7) // 8)], dtype=np.uint64
        )
        np.testing.assert_array_equal(rcc.candidate_normals(3, 1, 4, j, d),
                                      _table_reference(blocks)[:d])
    with pytest.raises(InputError, match="index"):
        rcc.candidate_normals(3, 1, 4, 2**24, 3)


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
# piece; starts inside a block and past 2^32 blocks (the rows of candidates).
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
