"""diff-BPG intra coding: HEVC prediction against a NumPy reference of H.265 8.4.4.2,
reference-sample substitution, transforms, Fourier rounding inside the op, hard and
soft mode choice, and the native op against the PyTorch reference (values, gradients,
gradcheck)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gencodec.codecs_ext.surrogates import bpg_intra as bi
from gencodec.codecs_ext.surrogates import hevc_intra as hi
from gencodec.codecs_ext.surrogates.rounding import fourier_round

# -- NumPy reference of H.265 8.4.4.2 (integers, written from the spec text) -------------
SPEC_ANGLE = dict(zip(range(2, 35), [32, 26, 21, 17, 13, 9, 5, 2, 0, -2, -5, -9, -13, -17, -21,
                                      -26, -32, -26, -21, -17, -13, -9, -5, -2, 0, 2, 5, 9, 13,
                                      17, 21, 26, 32]))
SPEC_INV_ANGLE = dict(zip(range(11, 26), [-4096, -1638, -910, -630, -482, -390, -315, -256,
                                           -315, -390, -482, -630, -910, -1638, -4096]))


def spec_predict(left, top, corner, n: int, mode: int, cidx: int) -> np.ndarray:
    """predSamples (returned as [y][x]) of 8.4.4.2.4 (planar), 8.4.4.2.5 (DC) and
    8.4.4.2.6 (angular); ``left[y] = p[-1][y]``, ``top[x] = p[x][-1]``, y, x < 2n."""

    def p(x, y):
        if x == -1 and y == -1:
            return int(corner)
        return int(left[y]) if x == -1 else int(top[x])

    clip = lambda v: min(max(v, 0), 255)  # noqa: E731 - Clip1Y, 8 bits
    k = int(math.log2(n))
    pred = np.zeros((n, n), dtype=np.int64)  # [x][y]
    if mode == 0:
        for x in range(n):
            for y in range(n):
                pred[x][y] = ((n - 1 - x) * p(-1, y) + (x + 1) * p(n, -1) + (n - 1 - y) * p(x, -1)
                              + (y + 1) * p(-1, n) + n) >> (k + 1)
    elif mode == 1:
        dc = (sum(p(x, -1) for x in range(n)) + sum(p(-1, y) for y in range(n)) + n) >> (k + 1)
        pred[:] = dc
        if cidx == 0 and n < 32:
            pred[0][0] = (p(-1, 0) + 2 * dc + p(0, -1) + 2) >> 2
            for x in range(1, n):
                pred[x][0] = (p(x, -1) + 3 * dc + 2) >> 2
            for y in range(1, n):
                pred[0][y] = (p(-1, y) + 3 * dc + 2) >> 2
    else:
        angle = SPEC_ANGLE[mode]
        ref = {}
        if mode >= 18:
            for x in range(n + 1):
                ref[x] = p(-1 + x, -1)
            if angle < 0:
                if (n * angle) >> 5 < -1:
                    for x in range((n * angle) >> 5, 0):
                        ref[x] = p(-1, -1 + ((x * SPEC_INV_ANGLE[mode] + 128) >> 8))
            else:
                for x in range(n + 1, 2 * n + 1):
                    ref[x] = p(-1 + x, -1)
            for x in range(n):
                for y in range(n):
                    i_idx, i_fact = ((y + 1) * angle) >> 5, ((y + 1) * angle) & 31
                    if i_fact:
                        pred[x][y] = ((32 - i_fact) * ref[x + i_idx + 1]
                                      + i_fact * ref[x + i_idx + 2] + 16) >> 5
                    else:
                        pred[x][y] = ref[x + i_idx + 1]
            if mode == 26 and cidx == 0 and n < 32:
                for y in range(n):
                    pred[0][y] = clip(p(0, -1) + ((p(-1, y) - p(-1, -1)) >> 1))
        else:
            for x in range(n + 1):
                ref[x] = p(-1, -1 + x)
            if angle < 0:
                if (n * angle) >> 5 < -1:
                    for x in range((n * angle) >> 5, 0):
                        ref[x] = p(-1 + ((x * SPEC_INV_ANGLE[mode] + 128) >> 8), -1)
            else:
                for x in range(n + 1, 2 * n + 1):
                    ref[x] = p(-1, -1 + x)
            for x in range(n):
                for y in range(n):
                    i_idx, i_fact = ((x + 1) * angle) >> 5, ((x + 1) * angle) & 31
                    if i_fact:
                        pred[x][y] = ((32 - i_fact) * ref[y + i_idx + 1]
                                      + i_fact * ref[y + i_idx + 2] + 16) >> 5
                    else:
                        pred[x][y] = ref[y + i_idx + 1]
            if mode == 10 and cidx == 0 and n < 32:
                for x in range(n):
                    pred[x][0] = clip(p(-1, 0) + ((p(x, -1) - p(-1, -1)) >> 1))
    return pred.T


def spec_references(plane: np.ndarray, n: int, i: int, j: int):
    """(left, top, corner) of block (i, j) of ``plane`` coded in raster order of n x n
    blocks, after the substitution process of 8.4.4.2.2."""
    h, w = plane.shape

    def available(x, y):  # picture coordinates
        return 0 <= x < w and 0 <= y < h and (y // n, x // n) < (i, j)

    y0, x0 = i * n, j * n
    # scan order of 8.4.4.2.2: p[-1][2n-1] .. p[-1][-1], then p[0][-1] .. p[2n-1][-1]
    coords = [(-1, y) for y in range(2 * n - 1, -2, -1)] + [(x, -1) for x in range(2 * n)]
    avail = [available(x0 + x, y0 + y) for x, y in coords]
    vals = [float(plane[y0 + y, x0 + x]) if a else None for (x, y), a in zip(coords, avail)]
    if not any(avail):
        vals = [128.0] * len(vals)
    else:
        if vals[0] is None:
            vals[0] = next(v for v in vals if v is not None)
        for k in range(1, len(vals)):
            if vals[k] is None:
                vals[k] = vals[k - 1]
    left = vals[:2 * n][::-1]  # p[-1][0 .. 2n-1]
    return np.array(left), np.array(vals[2 * n + 1:]), vals[2 * n]


def as_r(left, top, corner) -> torch.Tensor:
    """The surrogate's reference vector (hevc_intra layout) of spec samples."""
    return torch.tensor(list(left[::-1]) + [corner] + list(top), dtype=torch.float64)


# -- prediction ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 8, 16, 32])
def test_every_mode_matches_the_spec_in_integers(n):
    rng = np.random.default_rng(n)
    for trial in range(3):
        left, top = rng.integers(0, 256, 2 * n), rng.integers(0, 256, 2 * n)
        corner = int(rng.integers(0, 256))
        if trial == 2:  # extreme steps stress the interpolation weights
            left, top = np.where(left > 127, 255, 0), np.where(top > 127, 255, 0)
        preds = bi.mode_predictions(as_r(left, top, corner), n).numpy()
        for mode in range(hi.NUM_MODES):
            want = spec_predict(left, top, corner, n, mode, cidx=1)
            got = np.floor(preds[mode] + 0.5).astype(np.int64)
            np.testing.assert_array_equal(got, want, err_msg=f"n={n} mode={mode}")


def test_luma_boundary_filters_are_the_documented_difference():
    """The surrogate omits the luma DC / horizontal / vertical edge filters: only the
    first row and column of those three modes differ from the luma spec."""
    n, rng = 8, np.random.default_rng(3)
    left, top, corner = rng.integers(0, 256, 16), rng.integers(0, 256, 16), 77
    preds = np.floor(bi.mode_predictions(as_r(left, top, corner), n).numpy() + 0.5)
    for mode in range(hi.NUM_MODES):
        diff = preds[mode] != spec_predict(left, top, corner, n, mode, cidx=0)
        if mode in (1, 10, 26):
            assert diff.any() and not diff[1:, 1:].any()
        else:
            assert not diff.any()


@pytest.mark.parametrize("n,rows,cols", [(4, 3, 4), (8, 2, 3), (16, 2, 2)])
def test_reference_substitution_matches_the_spec(n, rows, cols):
    rng = np.random.default_rng(0)
    plane = rng.uniform(0, 255, (rows * n, cols * n))
    src = hi.reference_sources(n, rows, cols)
    flat = np.append(plane.reshape(-1), 128.0)
    for i in range(rows):
        for j in range(cols):
            r = flat[np.where(src[i * cols + j] < 0, flat.size - 1, src[i * cols + j])]
            np.testing.assert_array_equal(r, as_r(*spec_references(plane, n, i, j)).numpy())


def test_wavefronts_respect_the_dependencies():
    rows, cols = 4, 5
    when = {}
    for t, front in enumerate(hi.wavefronts(rows, cols)):
        for b in front:
            when[divmod(int(b), cols)] = t
    assert len(when) == rows * cols
    for (i, j), t in when.items():
        for di, dj in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
            if (i + di, j + dj) in when:
                assert when[(i + di, j + dj)] < t


# -- transforms ----------------------------------------------------------------------------
def test_core_transforms_are_hevcs():
    np.testing.assert_array_equal(hi.core_transform(4), [[64, 64, 64, 64], [83, 36, -36, -83],
                                                         [64, -64, -64, 64], [36, -83, 83, -36]])
    m8 = hi.core_transform(8)
    np.testing.assert_array_equal(m8[1], [89, 75, 50, 18, -18, -50, -75, -89])
    np.testing.assert_array_equal(hi.core_transform(32)[1, :16],
                                  [90, 90, 88, 85, 82, 78, 73, 67, 61, 54, 46, 38, 31, 22, 13, 4])
    np.testing.assert_array_equal(hi.core_transform(4, dst=True)[0], [29, 55, 74, 84])
    for n in (4, 8, 16, 32):  # nearly orthonormal after scaling, as HEVC designs them
        a = hi.orthonormal_transform(n)
        assert np.abs(a @ a.T - np.eye(n)).max() < 0.02
    a = hi.orthonormal_transform(4, dst=True)
    assert np.abs(a @ a.T - np.eye(4)).max() < 0.02
    with pytest.raises(ValueError):
        hi.core_transform(8, dst=True)


# -- the coder ------------------------------------------------------------------------------
BACKENDS = ["torch"] + (["native"] if bi.native_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("terms", [1, 4, 10])
def test_fourier_rounding_inside_the_op(backend, terms):
    """The first block sees no neighbour (all references 128): its coefficients are the
    Fourier rounding of A (X - 128) A^T / Qstep, exactly."""
    rng = np.random.default_rng(terms)
    x = torch.tensor(rng.uniform(0, 255, (1, 8, 16)))
    q = torch.tensor([3.0], dtype=torch.float64)
    _, yhat = bi.intra_code(x, q, 8, temperature=0.0, terms=terms, backend=backend)
    a = torch.tensor(hi.orthonormal_transform(8))
    y = a @ (x[0, :, :8] - 128.0) @ a.T / 3.0
    torch.testing.assert_close(yhat[0, 0], fourier_round(y, terms), rtol=0, atol=1e-9)
    if terms == 10:  # close to rounding away from the half-integers
        far = (y - y.round()).abs() < 0.4
        assert (yhat[0, 0] - y.round())[far].abs().max() < 0.1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [4, 8])
def test_temperature_zero_codes_each_block_with_its_argmin_mode(backend, n):
    """At T = 0 every block's coefficients and reconstruction are those of its lowest-cost
    mode, predicted from the op's own reconstruction with the spec's substitution."""
    rng = np.random.default_rng(n)
    rows, cols = 3, 3
    x = torch.tensor(rng.uniform(0, 255, (1, rows * n, cols * n)))
    qs = 5.0
    rec, yhat = bi.intra_code(x, torch.tensor([qs], dtype=torch.float64), n, temperature=0.0,
                              terms=6, dst=n == 4, backend=backend)
    a = torch.tensor(hi.orthonormal_transform(n, dst=n == 4))
    for i in range(rows):
        for j in range(cols):
            preds = bi.mode_predictions(as_r(*spec_references(rec[0].numpy(), n, i, j)), n)
            xb = x[0, i * n:(i + 1) * n, j * n:(j + 1) * n]
            cost = (a @ (xb - preds) @ a.T).abs().sum((-1, -2)) / qs
            pred = preds[int(cost.argmin())]
            y = fourier_round(a @ (xb - pred) @ a.T / qs, 6)
            torch.testing.assert_close(yhat[0, i * cols + j], y, rtol=0, atol=1e-8)
            out = (pred + a.T @ (y * qs) @ a).clamp(0, 255)
            torch.testing.assert_close(rec[0, i * n:(i + 1) * n, j * n:(j + 1) * n], out,
                                       rtol=0, atol=1e-8)


def test_soft_argmin_tends_to_the_hard_argmin():
    cost = torch.tensor([[3.0, 1.0, 2.0, 1.5], [0.2, 0.1, 0.3, 5.0]], dtype=torch.float64)
    hard = bi.soft_argmin(cost, 0.0)
    torch.testing.assert_close(hard, torch.eye(4, dtype=torch.float64)[[1, 1]])
    gaps = [float((bi.soft_argmin(cost, t) - hard).abs().max()) for t in (1.0, 0.1, 0.01, 1e-3)]
    assert all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-12
    assert bi.soft_argmin(torch.tensor([1.0, 1.0]), 0.0).tolist() == [1.0, 0.0]  # first on ties


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_coder_tends_to_its_hard_version_as_temperature_falls(backend):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.uniform(0, 255, (2, 16, 24)))
    q = torch.tensor([2.0, 9.0], dtype=torch.float64)
    hard = bi.intra_code(x, q, 8, temperature=0.0, terms=0, backend=backend)[0]
    gaps = [float((bi.intra_code(x, q, 8, temperature=t, terms=0, backend=backend)[0]
                   - hard).abs().max()) for t in (1.0, 1e-2, 1e-4)]
    assert gaps[-1] < 1e-6 and gaps[-1] <= gaps[0]


# -- native against the reference -----------------------------------------------------------
needs_native = pytest.mark.skipif(not bi.native_available(), reason="gencodec._native without dbpg")


#: (block size, temperature, ref_grad) of the native-against-reference comparisons
NATIVE_CASES = [(8, 1.0, 1.0), (4, 0.5, 0.1), (16, 0.0, 1.0), (8, 0.3, 0.0), (32, 1.0, 0.1)]


def assert_native_matches_reference(n: int, temperature: float, ref_grad: float) -> None:
    """Values and gradients on small planes. (On large planes the closed loop through
    Fourier rounding amplifies float rounding differences -- a change of 1e-12 in the
    input moves a 128x128 plane's reconstruction by 0.16 -- so the comparison is made
    where the chain of blocks is short.)"""
    rng = np.random.default_rng(n)
    x = torch.tensor(rng.uniform(20, 235, (3, 2 * n, 3 * n)))
    q = torch.tensor([1.5, 6.0, 20.0], dtype=torch.float64)
    g_rec, g_y = torch.randn(3, 2 * n, 3 * n, dtype=torch.float64), torch.randn(3, 6, n, n,
                                                                                dtype=torch.float64)
    results = []
    for backend in ("torch", "native"):
        xr, qr = x.clone().requires_grad_(), q.clone().requires_grad_()
        rec, yhat = bi.intra_code(xr, qr, n, temperature=temperature, terms=8, dst=n == 4,
                                  ref_grad=ref_grad, backend=backend)
        ((rec * g_rec).sum() + (yhat * g_y).sum()).backward()
        results.append((rec.detach(), yhat.detach(), xr.grad, qr.grad))
    for ref, nat in zip(*results):
        torch.testing.assert_close(nat, ref, rtol=1e-7, atol=1e-5)


@needs_native
@pytest.mark.parametrize("n,temperature,ref_grad", NATIVE_CASES)
def test_native_equals_the_reference(n, temperature, ref_grad):
    assert_native_matches_reference(n, temperature, ref_grad)


@needs_native
@pytest.mark.slow
def test_native_portable_kernels_equal_the_reference():
    """The native op picks AVX2 + FMA kernels where the CPU has them; its portable
    kernels (forced by GENCODEC_DBPG_GENERIC=1, in a fresh process since the choice is
    made once) must match the reference all the same."""
    code = (f"import runpy\n"
            f"from gencodec import _native\n"
            f"assert _native.dbpg_kernels() == 'generic', _native.dbpg_kernels()\n"
            f"test = runpy.run_path({str(Path(__file__))!r})\n"
            f"for case in test['NATIVE_CASES']:\n"
            f"    test['assert_native_matches_reference'](*case)\n")
    env = {**os.environ, "GENCODEC_DBPG_GENERIC": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@needs_native
def test_native_kernel_choice_is_reported():
    from gencodec import _native

    assert _native.dbpg_kernels() in ("avx2+fma", "generic")


@needs_native
def test_native_float32_inputs_come_back_float32():
    x = torch.rand(1, 8, 8) * 255
    rec, yhat = bi.intra_code(x, torch.tensor([4.0]), 8, temperature=1.0, terms=4,
                              backend="native")
    assert rec.dtype == yhat.dtype == torch.float32
    ref = bi.intra_code(x.double(), torch.tensor([4.0], dtype=torch.float64), 8, temperature=1.0,
                        terms=4, backend="torch")[0]
    assert float((rec.double() - ref).abs().max()) < 1e-5


@needs_native
@pytest.mark.parametrize("n,temperature,dst", [
    (4, 1.0, True), (4, 0.0, False), pytest.param(8, 2.0, False, marks=pytest.mark.slow)])
def test_native_gradcheck(n, temperature, dst):
    rng = np.random.default_rng(n)
    x = torch.tensor(rng.uniform(40, 215, (2, 2 * n, 2 * n)), requires_grad=True)
    q = torch.tensor([3.0, 7.0], dtype=torch.float64, requires_grad=True)

    def f(x, q):
        return bi.NativeIntraCode.apply(x, q, n, dst, temperature, 3, 1.0)

    assert torch.autograd.gradcheck(f, (x, q), eps=1e-6, atol=1e-4, rtol=1e-3)


@needs_native
def test_native_rejects_bad_tables():
    from gencodec import _native

    t = bi.intra_tables(8, 1, 1)
    args = list(bi._table_args(t))
    x, q = np.zeros((1, 8, 8)), np.ones(1)
    with pytest.raises(ValueError, match="multiples"):
        _native.dbpg_intra_forward(np.zeros((1, 8, 12)), q, *args, 1.0, 4)
    with pytest.raises(ValueError, match="qstep"):
        _native.dbpg_intra_forward(x, np.zeros(1), *args, 1.0, 4)
    bad = args.copy()
    bad[4] = np.full_like(args[4], 64)  # reference outside the plane
    with pytest.raises(ValueError, match="ref_source"):
        _native.dbpg_intra_forward(x, q, *bad, 1.0, 4)
    with pytest.raises(ValueError, match="temperature"):
        _native.dbpg_intra_forward(x, q, *args, -1.0, 4)
    for table, entry in ((1, (5, 3, 0)), (2, (20, 9, 1))):  # an index, then a weight
        bad = args.copy()
        bad[table] = args[table].copy()
        bad[table][entry] += 1
        with pytest.raises(ValueError, match=f"angular mode {entry[0]}"):
            _native.dbpg_intra_forward(x, q, *bad, 1.0, 4)
