"""Closed-loop HEVC intra coding of image planes, differentiable: the core of diff-BPG.

Per block, in wavefront order (:func:`.hevc_intra.wavefronts`), as a real encoder
codes it (Guo et al., section "Differentiable BPG Codec"):

1. reference samples gathered from the **reconstructed** neighbours, with HEVC's
   substitution of unavailable samples (:func:`.hevc_intra.reference_sources`);
2. the 35 HEVC predictions ``P_m`` (planar, DC, 33 angular);
3. a rate-distortion cost per mode, ``J_m = sum |A (X - P_m) A^T| / Qstep`` (the
   transform-domain SATD HEVC encoders use for their mode decision, in units of the
   step size, so one temperature fits every QP; the mode's own signalling bits are not
   modelled), and the soft-argmin weights ``w = softmax(-J / T)`` (Kendall et al.
   2017); ``T = 0`` is the hard argmin (first minimum on ties);
4. the prediction ``P = sum_m w_m P_m``, the residual's transform ``C = A (X - P) A^T``
   (HEVC core transform, DST for luma 4x4), ``yhat = fourier_round(C / Qstep)``
   (the corrected Eq. 5 of the paper, :mod:`.rounding`) and the reconstruction
   ``clip(P + A^T (yhat Qstep) A, 0, 255)``, which later blocks predict from.

Returns the reconstructed planes and the rounded coefficients ``yhat`` (what the rate
model prices). Two back ends compute exactly this: :func:`intra_code_reference` in
plain PyTorch (autograd does the backward) and :class:`NativeIntraCode`, the C++/OpenMP
forward and hand-written backward of ``native/dbpg`` (float64 inside).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from . import hevc_intra as hi
from .rounding import fourier_round


@dataclasses.dataclass(frozen=True)
class IntraTables:
    """The fixed tables of one block size and picture size (numpy, shared by both
    back ends)."""

    n: int
    rows: int
    cols: int
    transform: np.ndarray  # (n, n) float64, orthonormal-scaled
    pred_index: np.ndarray  # (35, n*n, 4) int32
    pred_weight: np.ndarray  # (35, n*n, 4) float64
    dc_index: np.ndarray  # (2n,) int32
    ref_source: np.ndarray  # (blocks, 4n+1) int64, -1 = mid-grey
    fronts: tuple[np.ndarray, ...]

    @property
    def blocks(self) -> int:
        return self.rows * self.cols


@functools.lru_cache(maxsize=64)
def intra_tables(n: int, rows: int, cols: int, dst: bool = False) -> IntraTables:
    index, weight = hi.prediction_tables(n)
    return IntraTables(n, rows, cols, hi.orthonormal_transform(n, dst), index, weight,
                       hi.dc_sources(n), hi.reference_sources(n, rows, cols),
                       tuple(hi.wavefronts(rows, cols)))


def soft_argmin(cost: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(-cost / T)`` over the last axis; the one-hot argmin at ``T = 0``."""
    if temperature == 0:
        return torch.nn.functional.one_hot(cost.argmin(-1), cost.shape[-1]).to(cost.dtype)
    return torch.softmax(-cost / temperature, dim=-1)


def _block_pixels(t: IntraTables) -> np.ndarray:
    """(blocks, n*n) raster indices in the plane of each block's samples."""
    n, width = t.n, t.cols * t.n
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    bi, bj = np.divmod(np.arange(t.blocks), t.cols)
    return ((bi[:, None] * n + yy.reshape(1, -1)) * width + bj[:, None] * n + xx.reshape(1, -1))


@functools.lru_cache(maxsize=32)
def _prediction_tensors(n: int, dtype: torch.dtype, device: torch.device):
    index, weight = hi.prediction_tables(n)
    dc_mask = torch.zeros(hi.NUM_MODES, 1, dtype=torch.bool, device=device)
    dc_mask[hi.DC] = True
    return (torch.as_tensor(index.astype(np.int64), device=device),
            torch.as_tensor(np.array(weight), dtype=dtype, device=device),
            torch.as_tensor(hi.dc_sources(n).astype(np.int64), device=device), dc_mask)


def mode_predictions(r: torch.Tensor, n: int) -> torch.Tensor:
    """The 35 HEVC predictions ``(..., 35, n, n)`` from reference samples ``r``
    ``(..., 4n + 1)`` laid out as :mod:`.hevc_intra` says."""
    idx, wt, dc_idx, dc_mask = _prediction_tensors(n, r.dtype, r.device)
    preds = (r[..., idx] * wt).sum(-1)  # (..., 35, n*n)
    dc = r[..., dc_idx].mean(-1)[..., None, None]
    return torch.where(dc_mask, dc, preds).reshape(*r.shape[:-1], hi.NUM_MODES, n, n)


def intra_code_reference(planes: torch.Tensor, qstep: torch.Tensor, n: int, *,
                         temperature: float, terms: int, dst: bool = False,
                         ref_grad: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch reference. ``planes``: ``(P, H, W)`` samples on the 0..255 scale, ``H``
    and ``W`` multiples of ``n``; ``qstep``: ``(P,)``. Returns ``(recon (P, H, W),
    yhat (P, blocks, n, n))`` with blocks in raster order.

    ``ref_grad`` scales the gradient that flows into the reference samples (the
    forward is unchanged): 1 is the exact derivative of the closed loop, which
    explodes on real pictures because every block multiplies it by
    ``1 - round_N'(y)`` (up to ``2N`` in size) -- 1e38 at the first blocks of a
    256x256 luma plane at QP 4 with N = 10; 0 keeps only each block's own path."""
    p, h, w = planes.shape
    t = intra_tables(n, h // n, w // n, dst)
    dev, dt = planes.device, planes.dtype
    a = torch.as_tensor(t.transform, dtype=dt, device=dev)
    src = torch.as_tensor(np.where(t.ref_source < 0, h * w, t.ref_source), device=dev)
    pix = torch.as_tensor(_block_pixels(t), device=dev)
    xb = planes.reshape(p, t.rows, n, t.cols, n).permute(0, 1, 3, 2, 4).reshape(p, -1, n, n)
    q = qstep.reshape(p, 1, 1, 1)
    recon = torch.cat([planes.new_zeros(p, h * w), planes.new_full((p, 1), hi.MID_GREY)], 1)
    parts, order = [], []
    for front in t.fronts:
        fr = torch.as_tensor(front, device=dev)
        r = recon[:, src[fr]]  # (P, F, 4n+1)
        if ref_grad != 1.0:  # forward unchanged, gradient into the references scaled
            r = ref_grad * r + (1.0 - ref_grad) * r.detach()
        preds = mode_predictions(r, n)  # (P, F, 35, n, n)
        x = xb[:, fr]
        cost = ((a @ (x.unsqueeze(2) - preds) @ a.T).abs().sum((-1, -2))
                / q.reshape(p, 1, 1))
        wgt = soft_argmin(cost, temperature)
        pred = (wgt[..., None, None] * preds).sum(2)
        yhat = fourier_round(a @ (x - pred) @ a.T / q, terms)
        out = (pred + a.T @ (yhat * q) @ a).clamp(0.0, 255.0)
        recon = recon.index_copy(1, pix[fr].reshape(-1), out.reshape(p, -1))
        parts.append(yhat)
        order.append(fr)
    inverse = torch.argsort(torch.cat(order))
    return recon[:, :h * w].reshape(p, h, w), torch.cat(parts, 1)[:, inverse]


def _native():
    from gencodec import _native

    return _native


def native_available() -> bool:
    try:
        return hasattr(_native(), "dbpg_intra_forward")
    except ImportError:
        return False


def _table_args(t: IntraTables) -> tuple:
    fronts = np.concatenate(t.fronts)
    starts = np.cumsum([0] + [len(f) for f in t.fronts]).astype(np.int64)
    return (t.transform, t.pred_index, t.pred_weight, t.dc_index, t.ref_source, fronts, starts)


class NativeIntraCode(torch.autograd.Function):
    """The same computation as :func:`intra_code_reference` by ``native/dbpg``: the
    forward codes the blocks wavefront by wavefront (OpenMP over planes and the blocks
    of a wavefront) and keeps, besides the mode costs, the signs of each mode's
    transformed residual (2 bits per coefficient); the backward recomputes each
    block's predictions and weighted residual from the saved input, reconstruction and
    costs (no mode is transformed again: the costs' gradients need only the signs) and
    runs the chain rule in reverse wavefront order. Float64 inside;
    inputs of other dtypes are converted and the outputs converted back. CUDA tensors
    take the CUDA op (:mod:`.bpg_intra_cuda`) when the native module has it, else the
    CPU op."""

    @staticmethod
    def forward(ctx, planes, qstep, n, dst, temperature, terms, ref_grad):
        from . import bpg_intra_cuda

        if planes.is_cuda and bpg_intra_cuda.available():
            return bpg_intra_cuda.forward(ctx, planes, qstep, n, dst, temperature, terms,
                                          ref_grad)
        p, h, w = planes.shape
        t = intra_tables(n, h // n, w // n, dst)
        x = planes.detach().to("cpu", torch.float64).contiguous().numpy()
        qs = qstep.detach().to("cpu", torch.float64).contiguous().numpy()
        recon, yhat, cost, signs = _native().dbpg_intra_forward(x, qs, *_table_args(t),
                                                                float(temperature), int(terms))
        recon_t, yhat_t = torch.from_numpy(recon), torch.from_numpy(yhat)
        ctx.save_for_backward(torch.from_numpy(x), torch.from_numpy(qs), recon_t,
                              torch.from_numpy(cost), torch.from_numpy(signs))
        ctx.setup = (t, float(temperature), int(terms), float(ref_grad), planes.dtype,
                     planes.device, qstep.dtype)
        return (recon_t.to(planes.device, planes.dtype),
                yhat_t.to(planes.device, planes.dtype))

    @staticmethod
    def backward(ctx, grad_recon, grad_yhat):
        if ctx.saved_tensors[0].is_cuda:  # saved by bpg_intra_cuda.forward
            from . import bpg_intra_cuda

            return bpg_intra_cuda.backward(ctx, grad_recon, grad_yhat)
        x, qs, recon, cost, signs = ctx.saved_tensors
        t, temperature, terms, ref_grad, dtype, device, qdtype = ctx.setup
        g_recon = (torch.zeros_like(recon) if grad_recon is None
                   else grad_recon.to("cpu", torch.float64).contiguous())
        g_yhat = (torch.zeros(x.shape[0], t.blocks, t.n, t.n, dtype=torch.float64)
                  if grad_yhat is None else grad_yhat.to("cpu", torch.float64).contiguous())
        gx, gq = _native().dbpg_intra_backward(x.numpy(), qs.numpy(), recon.numpy(),
                                               cost.numpy(), signs.numpy(), g_recon.numpy(),
                                               g_yhat.numpy(), *_table_args(t), temperature,
                                               terms, ref_grad)
        return (torch.from_numpy(gx).to(device, dtype), torch.from_numpy(gq).to(device, qdtype),
                None, None, None, None, None)


def intra_code(planes: torch.Tensor, qstep: torch.Tensor, n: int, *, temperature: float,
               terms: int, dst: bool = False, ref_grad: float = 1.0, backend: str = "torch"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-loop intra coding by ``backend`` ``"torch"`` (the reference) or
    ``"native"``; see :func:`intra_code_reference` for the shapes and ``ref_grad``."""
    if backend == "native":
        return NativeIntraCode.apply(planes, qstep, n, dst, temperature, terms, ref_grad)
    if backend == "torch":
        return intra_code_reference(planes, qstep, n, temperature=temperature, terms=terms,
                                    dst=dst, ref_grad=ref_grad)
    raise ValueError(f"backend must be 'torch' or 'native', got {backend!r}")


def qstep_of(qp: torch.Tensor) -> torch.Tensor:
    """HEVC's quantiser step size ``2^((QP - 4) / 6)``."""
    return torch.exp2((qp - 4.0) / 6.0)


#: HEVC's chroma QP for 4:2:0 as a function of the luma QP (H.265 Table 8-10, zero
#: offsets): equal up to 29, then the table, then QP - 6 above 43.
_QPC_TABLE = {30: 29, 31: 30, 32: 31, 33: 32, 34: 33, 35: 33, 36: 34, 37: 34, 38: 35,
              39: 35, 40: 36, 41: 36, 42: 37, 43: 37}


def chroma_qp(qp: torch.Tensor, subsampled: bool) -> torch.Tensor:
    """The chroma QP HEVC uses for luma QP ``qp``: Table 8-10 for 4:2:0, interpolated
    linearly between integer QPs (so it stays differentiable); ``qp`` itself for 4:4:4."""
    if not subsampled:
        return qp
    knots = torch.arange(0, 52, dtype=qp.dtype, device=qp.device)
    values = torch.tensor([_QPC_TABLE.get(k, k if k < 30 else k - 6) for k in range(52)],
                          dtype=qp.dtype, device=qp.device)
    lo = qp.detach().floor().clamp(0, 50).long()
    frac = qp - knots[lo]
    return values[lo] + frac * (values[lo + 1] - values[lo])

