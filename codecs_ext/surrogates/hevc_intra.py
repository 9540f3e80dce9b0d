"""HEVC intra coding maths for the diff-BPG surrogate: prediction tables, reference
samples, core transforms, wavefront block order (ITU-T H.265, 8.4.4.2 and 8.6.4).

Everything here is a fixed, data-independent table built once per block size and
shared by the PyTorch reference (:mod:`.bpg`) and the native op (``native/dbpg``), so
both compute exactly the same thing.

**Reference samples.** A block of size ``n`` at block row ``i``, column ``j`` predicts
from ``4n + 1`` samples, stored in the scan order of H.265 8.4.4.2.2::

    r[0 .. 2n-1]    = p[-1][2n-1 .. 0]   (left column, bottom-left first)
    r[2n]           = p[-1][-1]          (corner)
    r[2n+1 .. 4n]   = p[0 .. 2n-1][-1]   (top row, then top-right)

Blocks are coded in raster order of equal blocks, so the below-left samples are never
available, the top-right ones only when the block above-right exists. Unavailable
samples are substituted as 8.4.4.2.2 says (the first available one in scan order
fills the start, then each unavailable sample copies its predecessor; with none
available all are ``1 << (bitDepth - 1) = 128``); this is a fixed gather per block
position (:func:`reference_sources`).

**Prediction.** Planar (mode 0, 8.4.4.2.4), DC (mode 1, 8.4.4.2.5) and the 33 angular
modes (2..34, 8.4.4.2.6, including the inverse-angle projection of the side
reference) are computed as in the spec **without the integer rounding** (``+16 >> 5``
becomes ``/ 32``), so on integer reference samples ``floor(pred + 1/2)`` equals the
spec's integer prediction exactly. Modelled as H.265 specifies for a chroma block
(``cIdx > 0``, 4:2:0): no reference-sample smoothing (8.4.4.2.3) and no DC / pure
horizontal / pure vertical boundary filters; for luma these filters are a documented
simplification of the surrogate. Each non-DC mode is, per output sample, a weighted
sum of at most two (angular) or four (planar) reference samples: :func:`prediction_tables`.

**Transforms.** The HEVC core transform matrices (8.6.4.2, the 32-point matrix and its
row subsamplings) and the 4x4 DST-VII for luma 4x4, scaled by ``1 / (64 sqrt(n))`` so
they are (almost exactly) orthonormal: the step size ``Qstep = 2^((QP - 4) / 6)``
applies to these coefficients as in the spec's scaling design.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Planar, DC, then the 33 angular modes.
NUM_MODES = 35
PLANAR, DC = 0, 1

#: intraPredAngle for modes 2..34 (H.265 Table 8-4).
INTRA_PRED_ANGLE = (32, 26, 21, 17, 13, 9, 5, 2, 0, -2, -5, -9, -13, -17, -21, -26,
                    -32, -26, -21, -17, -13, -9, -5, -2, 0, 2, 5, 9, 13, 17, 21, 26, 32)
#: invAngle for modes 11..25 (H.265 Table 8-5).
INV_ANGLE = (-4096, -1638, -910, -630, -482, -390, -315, -256, -315, -390, -482, -630,
             -910, -1638, -4096)

#: 64 sqrt(2) cos(pi j / 64) as HEVC rounds it, j = 0..32 (the distinct entries of
#: the 32-point core transform matrix of 8.6.4.2; 64 for j = 16 and the DC row).
_HEVC_COS = (91, 90, 90, 90, 89, 88, 87, 85, 83, 82, 80, 78, 75, 73, 70, 67, 64, 61, 57,
             54, 50, 46, 43, 38, 36, 31, 25, 22, 18, 13, 9, 4, 0)
#: The 4x4 DST-VII matrix for luma 4x4 intra blocks (8.6.4.2).
HEVC_DST4 = np.array([[29, 55, 74, 84], [74, 74, 0, -74], [84, -29, -74, 55],
                      [55, -84, 74, -29]], dtype=np.int64)

#: The mid-grey substituted when no reference sample is available (8-bit).
MID_GREY = 128.0


def angle_of(mode: int) -> int:
    return INTRA_PRED_ANGLE[mode - 2]


def inv_angle_of(mode: int) -> int:
    return INV_ANGLE[mode - 11]


@functools.lru_cache(maxsize=None)
def core_transform(n: int, dst: bool = False) -> np.ndarray:
    """The integer HEVC core transform of size ``n`` (rows = basis functions), or the
    4x4 DST with ``dst``."""
    if dst:
        if n != 4:
            raise ValueError("the HEVC DST is 4x4 only")
        return HEVC_DST4.copy()
    if n not in (4, 8, 16, 32):
        raise ValueError(f"HEVC transforms are 4, 8, 16 or 32 points, not {n}")
    m = np.empty((n, n), dtype=np.int64)
    for k in range(n):
        kk = k * (32 // n)  # row of the 32-point matrix
        for x in range(n):
            if kk == 0:
                m[k, x] = 64
                continue
            j = ((2 * x + 1) * kk) % 128  # cos(pi j / 64)
            if j <= 32:
                m[k, x] = _HEVC_COS[j]
            elif j <= 64:
                m[k, x] = -_HEVC_COS[64 - j]
            elif j <= 96:
                m[k, x] = -_HEVC_COS[j - 64]
            else:
                m[k, x] = _HEVC_COS[128 - j]
    return m


def orthonormal_transform(n: int, dst: bool = False) -> np.ndarray:
    """:func:`core_transform` scaled by ``1 / (64 sqrt(n))`` (float64): coefficients
    ``A @ block @ A.T``, reconstruction ``A.T @ coeffs @ A``."""
    return core_transform(n, dst) / (64.0 * math.sqrt(n))


def _p_left(n: int, y: int) -> int:
    """Index in r of p[-1][y], y = -1 .. 2n-1."""
    return 2 * n - 1 - y


def _p_top(n: int, x: int) -> int:
    """Index in r of p[x][-1], x = -1 .. 2n-1."""
    return 2 * n + 1 + x


@functools.lru_cache(maxsize=None)
def prediction_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, shapes ``(NUM_MODES, n * n, 4)``: sample ``(y, x)`` (raster
    index ``y * n + x``) of mode ``m``'s prediction is
    ``sum_k weight[m, y*n+x, k] * r[index[m, y*n+x, k]]``. The DC row is all zeros
    (DC is the mean of ``r[n .. 3n]`` without the corner, see :func:`dc_sources`)."""
    index = np.zeros((NUM_MODES, n * n, 4), dtype=np.int32)
    weight = np.zeros((NUM_MODES, n * n, 4), dtype=np.float64)
    log2n = int(math.log2(n))
    for y in range(n):
        for x in range(n):
            s = y * n + x
            # planar (8-5): 4 terms, divided by 2n
            index[PLANAR, s] = (_p_left(n, y), _p_top(n, n), _p_top(n, x), _p_left(n, n))
            weight[PLANAR, s] = np.array([n - 1 - x, x + 1, n - 1 - y, y + 1]) / 2.0 ** (log2n + 1)
    for mode in range(2, NUM_MODES):
        angle = angle_of(mode)
        vertical = mode >= 18
        # ref[] of 8.4.4.2.6 as indices into r, for ref positions -n .. 2n
        ref = {}
        main = _p_top if vertical else _p_left
        side = _p_left if vertical else _p_top
        for k in range(0, 2 * n + 1):
            ref[k] = main(n, -1 + k)
        if angle < 0 and (n * angle) >> 5 < -1:
            inv = inv_angle_of(mode)
            for k in range((n * angle) >> 5, 0):
                ref[k] = side(n, -1 + ((k * inv + 128) >> 8))
        for y in range(n):
            for x in range(n):
                # along the prediction direction: d is the distance from the main edge
                d, t = (y, x) if vertical else (x, y)
                i_idx = ((d + 1) * angle) >> 5
                i_fact = ((d + 1) * angle) & 31
                s = y * n + x
                index[mode, s, 0] = ref[t + i_idx + 1]
                weight[mode, s, 0] = (32 - i_fact) / 32.0
                if i_fact:
                    index[mode, s, 1] = ref[t + i_idx + 2]
                    weight[mode, s, 1] = i_fact / 32.0
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight


def dc_sources(n: int) -> np.ndarray:
    """Indices in r of the ``2n`` samples DC averages: p[-1][0..n-1] and p[0..n-1][-1]."""
    return np.array([_p_left(n, y) for y in range(n)] + [_p_top(n, x) for x in range(n)],
                    dtype=np.int32)


def reference_sources(n: int, rows: int, cols: int) -> np.ndarray:
    """``(rows * cols, 4n + 1)`` int64: for each block (raster order) and reference
    sample, the raster index in the ``(rows * n) x (cols * n)`` plane it is read from
    after 8.4.4.2.2 substitution, or ``-1`` for :data:`MID_GREY` (nothing available)."""
    width = cols * n
    out = np.full((rows * cols, 4 * n + 1), -1, dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            y0, x0 = i * n, j * n
            src = np.full(4 * n + 1, -1, dtype=np.int64)
            if j > 0:  # left: p[-1][0 .. n-1]
                for y in range(n):
                    src[_p_left(n, y)] = (y0 + y) * width + x0 - 1
            if i > 0 and j > 0:
                src[2 * n] = (y0 - 1) * width + x0 - 1
            if i > 0:  # top, and top-right when that block exists
                for x in range(2 * n if j + 1 < cols else n):
                    src[_p_top(n, x)] = (y0 - 1) * width + x0 + x
            avail = src >= 0
            if avail.any():
                if not avail[0]:
                    src[0] = src[np.argmax(avail)]
                for k in range(1, 4 * n + 1):
                    if src[k] < 0:
                        src[k] = src[k - 1]
            out[i * cols + j] = src
    return out


def wavefronts(rows: int, cols: int) -> list[np.ndarray]:
    """Blocks (raster indices) grouped by wavefront ``t = j + 2 i``: every block's
    left, top-left, top and top-right neighbours lie in earlier wavefronts, so the
    blocks of one wavefront can be coded in parallel."""
    fronts: list[list[int]] = [[] for _ in range(cols + 2 * (rows - 1))]
    for i in range(rows):
        for j in range(cols):
            fronts[j + 2 * i].append(i * cols + j)
    return [np.array(f, dtype=np.int64) for f in fronts]
