"""JND model (Wu et al. 2017) against values computed by hand on synthetic patches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gencodec.train import jnd


def gray(y: np.ndarray) -> np.ndarray:
    """A grey RGB image whose BT.601 luma is ``y`` (the weights sum to 1)."""
    return np.repeat(np.asarray(y, dtype=np.float64)[..., None], 3, axis=2)


def edge(lo: float, hi: float, n: int = 32) -> np.ndarray:
    y = np.full((n, n), float(lo))
    y[:, n // 2:] = hi
    return y


def plaid(n: int = 32, mean: float = 127.0, amp: float = 60.0) -> np.ndarray:
    """Row stripes plus column stripes of period 4 (0, 0, 1, 1)."""
    s = (np.arange(n) % 4 >= 2).astype(np.float64)
    return mean + amp * s[:, None] + amp * s[None, :]


@pytest.mark.parametrize("level, expected", [
    (127.0, 3.0),                                          # 17 (1 - 1) + 3
    (64.0, 17.0 * (1.0 - math.sqrt(64.0 / 127.0)) + 3.0),  # dark: 7.932
    (255.0, 3.0 / 128.0 * 128.0 + 3.0),                    # bright: 6
])
def test_flat_patch_is_luminance_adaptation_only(level, expected):
    out = jnd.jnd_map(gray(np.full((16, 16), level)))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_edge_pixel_by_hand():
    # Vertical step 50 | 200 at column 16; pixel (10, 15) is the last dark column.
    out = jnd.jnd_map(gray(edge(50.0, 200.0)))
    # Background: kernel column sums 5, 8, 6, 8, 5 over columns 13..17 -> 19 x 50 + 13 x 200
    b = (19 * 50 + 13 * 200) / 32.0
    la = 17.0 * (1.0 - math.sqrt(b / 127.0)) + 3.0
    # Prewitt: Gv = 50 - 200, Gh = 0 -> Cl = 150 / sqrt(2); one orientation (90 deg): Cp = 1
    cl = 150.0 / math.sqrt(2.0)
    vm = 1.84 * cl ** 2.4 / (cl ** 2 + 26.0 ** 2) * (0.3 * 1.0 / 2.0)
    assert out[10, 15] == pytest.approx(la + vm - 0.3 * min(la, vm), rel=1e-12)
    assert out[10, 15] == pytest.approx(5.2887, abs=1e-3)
    # far from the edge (5 columns away): flat, LA only
    assert out[10, 5] == pytest.approx(17.0 * (1.0 - math.sqrt(50.0 / 127.0)) + 3.0, rel=1e-12)


def test_texture_pixel_by_hand():
    out = jnd.jnd_map(gray(plaid()))
    # Pixel (18, 18): rows/columns 16..20 have stripe values 0, 0, 1, 1, 0 and the
    # kernel's row/column sums 5, 8, 6, 8, 5 -> (6 + 8) / 32 of each stripe.
    b = 127.0 + 2 * 60.0 * 14.0 / 32.0
    la = 3.0 / 128.0 * (b - 127.0) + 3.0
    # Gh = Gv = +-60 everywhere -> Cl = 60, orientations 45 and 135 deg -> Cp = 2
    cl = 60.0
    vm = 1.84 * cl ** 2.4 / (cl ** 2 + 676.0) * (0.3 * 2.0 ** 2.7 / (2.0 ** 2 + 1.0))
    assert out[18, 18] == pytest.approx(la + vm - 0.3 * min(la, vm), rel=1e-12)
    assert out[18, 18] == pytest.approx(6.405, abs=1e-3)


def test_pattern_complexity_counts_orientations():
    y = plaid()
    gh, gv = jnd.gradients(y)
    cp = jnd.pattern_complexity(gh, gv)
    assert np.all(cp[4:-4, 4:-4] == 2)
    gh, gv = jnd.gradients(np.full((16, 16), 80.0))
    assert np.all(jnd.pattern_complexity(gh, gv) == 0)
    noise = np.random.default_rng(0).uniform(0, 255, (40, 40))
    gh, gv = jnd.gradients(noise)
    cp = jnd.pattern_complexity(gh, gv)[5:-5, 5:-5]
    assert cp.min() >= 9 and cp.max() == 12  # irregular: (almost) every orientation


def test_patch_means_match_direct_means():
    v = np.random.default_rng(1).normal(size=(50, 60))
    corners = np.array([[0, 0], [3, 7], [18, 28]])
    got = jnd.patch_means(v, corners, 22)
    want = [v[y:y + 22, x:x + 22].mean() for y, x in corners]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_scores_rank_flat_edge_texture():
    patches = [gray(np.full((32, 32), 127.0)), gray(edge(100.0, 154.0)),
               gray(np.random.default_rng(2).uniform(77, 177, (32, 32)))]
    raw = [jnd.jnd_map(p).mean() for p in patches]
    assert raw[0] == pytest.approx(3.0)
    assert raw[0] < raw[1] < raw[2]
    np.testing.assert_allclose(jnd.normalised_scores(raw), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(jnd.normalised_scores([2.0, 2.0, 5.0]), [0.25, 0.25, 1.0])


def test_select_patches_keeps_top_fifth_and_is_seeded():
    rng = np.random.default_rng(3)
    flat = np.full((300, 300, 3), 120, np.uint8)
    busy = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    small = np.zeros((100, 100, 3), np.uint8)
    kept = jnd.select_patches([flat, busy, small], size=256, candidates_per_image=10, seed=5)
    assert len(kept) == 4  # ranks 16..19 of 0..19 exceed 0.8 (16 / 19 = 0.84)
    assert all(p.image == 1 and p.score > 0.8 for p in kept)
    assert all(0 <= p.y <= 44 and 0 <= p.x <= 44 for p in kept)
    again = jnd.select_patches([flat, busy, small], size=256, candidates_per_image=10, seed=5)
    assert kept == again
    with pytest.raises(ValueError):
        jnd.select_patches([busy], threshold=1.0)
