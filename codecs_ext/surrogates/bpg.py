"""diff-BPG: a differentiable surrogate of our ``bpg`` codec (HEVC intra, x265).

Guo et al., section "Differentiable BPG Codec": intra prediction from neighbouring
(reconstructed) pixels with a soft-argmin over the modes' rate-distortion costs,
transform, rounding by a Fourier series (Eq. 5, corrected: :mod:`.rounding`) and a
learned entropy model for the rate. Here:

* colour as the ``bpg`` codec codes it (x265 through PyAV, whose FFmpeg ``swscale``
  converts the pictures): full-range BT.601 Y'CbCr (JPEG matrix) on the 0..255 scale;
  chroma 4:2:0 filtered as swscale does (:func:`swscale_chroma_420`) or 4:4:4; the
  planes offset by swscale's fixed-point truncation (:data:`SWSCALE_CHROMA_BIAS`);
* the picture edge-padded to a multiple of the block size (as the codec pads), coded in
  ``block_size`` luma blocks (4, 8, 16 or 32; chroma blocks half that in 4:2:0) by
  the closed-loop intra coder of :mod:`.bpg_intra` (PyTorch reference or native op)
  at the QP x265 really codes an intra picture at, :func:`coded_qp` (3 below ``--qp``);
* the chroma QP from HEVC's Table 8-10 (4:2:0) or, in 4:4:4, the luma QP plus the
  offset x265 signals (:data:`CHROMA_QP_OFFSET`);
* decoded as the codec decodes: 4:2:0 chroma repeated 2x2 (swscale's yuv420p -> rgb24
  path) and that path's truncation bias (:data:`SWSCALE_RGB_BIAS`);
* bits from :class:`.bpg_rate.BpgRateModel`, calibrated to x265's real bitstreams
  (the shipped ``dbpg-rate-*`` models; ``models/dbpg-rate/README.md``).

What x265 (``preset=medium``) does and this surrogate does not: the intra dead zone of
its quantiser (``level = floor(|c| / Qstep + 171/512)``, not ``+ 1/2``: it needs a change
inside the closed-loop op), the deblocking filter and SAO, adaptive block sizes (8 to
32) and psy-rd mode decisions. Measured (models/dbpg-rate/README.md): the dead zone
would lower the surrogate's PSNR by 0.3 (QP 22) to 0.9 dB (QP 47) on training patches,
the deblocking filter and SAO raise x265's by 0.03 to 0.37 dB; together with the
adaptive blocks these cancel to within 0.45 dB at every QP of benchmarks/surrogate.py.

Two properties of the paper's design to know when training through it: the exact
gradient of the closed loop through Fourier rounding explodes (hence ``ref_grad``), and
the forward amplifies tiny input changes the same way (1e-12 moves a 128x128 plane's
reconstruction by about 0.16 of 255 with 10 terms): outputs are smooth in the input
only for short block chains.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import bpg_intra
from .bpg_rate import BpgRateModel
from .rounding import DEFAULT_TERMS

#: Full-range BT.601 (JPEG / BPG) RGB -> Y'CbCr on the 0..255 scale (offsets 0, 128, 128).
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168735892, -0.331264108, 0.5),
                (0.5, -0.418687589, -0.081312411))
YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136286, -0.714136286), (1.0, 1.772, 0.0))
BLOCK_SIZES = (4, 8, 16, 32)
BACKENDS = ("auto", "torch", "native")
QP_RANGE = (0.0, 51.0)
#: x265 in constant-QP mode (``--qp``, what our ``bpg`` codec passes) codes I slices at
#: ``int(qp - 6 log2(ipratio) + 0.5)`` (x265 ``RateControl``, CQP), ``qp - 3`` with the
#: default ``ipratio`` 1.4; checked bit-exact: ``--qp q`` and ``--qp q-3 --ipratio 1``
#: write the same stream.
I_SLICE_QP_OFFSET = 3.0
#: The chroma QP offset x265 (``preset=medium``) signals: with psy-rd on (as in that
#: preset) it raises both to 6 for 4:4:4 input, "halving the quality" of the doubled
#: chroma resolution (x265 ``Encoder::configure``); checked bit-exact: its default
#: 4:4:4 stream equals the one with ``cbqpoffs=6:crqpoffs=6``.
CHROMA_QP_OFFSET = {"420": 0.0, "444": 6.0}
#: Mean offset of swscale's Cb, Cr planes (rgb24 -> yuv420p / yuv444p, full-range
#: BT.601, as PyAV converts the codec's input) from exact arithmetic: its fixed-point
#: conversion truncates (luma: below 0.01). Measured on 16 (4:2:0) and 8 (4:4:4)
#: training patches (std 0.03).
SWSCALE_CHROMA_BIAS = {"420": -0.59, "444": -0.51}
#: Mean offset of swscale's R, G, B (yuv420p -> rgb24, the codec's decoder output) from
#: the exact conversion of the same planes with chroma repeated 2x2 (its yuv2rgb path
#: truncates); 0 for yuv444p (below 0.04). Same patches (std <= 0.09).
SWSCALE_RGB_BIAS = {"420": (-0.52, -0.97, -0.50), "444": (0.0, 0.0, 0.0)}
#: Gradient factor through the reference samples: the first blocks' input gradients of
#: a 256x256 photo stay within a few times those of ref_grad = 0 (measured 1e38 at 1).
DEFAULT_REF_GRAD = 0.1


def _colour(x: torch.Tensor, matrix, offset: float) -> torch.Tensor:
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    off = torch.tensor([0.0, offset, offset], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", m, x) + off


def rgb_to_ycbcr(rgb255: torch.Tensor) -> torch.Tensor:
    return _colour(rgb255, RGB_TO_YCBCR, 128.0)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    off = torch.tensor([0.0, 128.0, 128.0], dtype=ycc.dtype, device=ycc.device).view(1, 3, 1, 1)
    return _colour(ycc - off, YCBCR_TO_RGB, 0.0)


def swscale_chroma_420(chroma: torch.Tensor) -> torch.Tensor:
    """4:2:0 chroma ``(..., H, W) -> (..., H/2, W/2)`` as swscale subsamples it in the
    codec's rgb24 -> yuv420p conversion (its bilinear scaler at ratio 2): the mean of the
    two columns ``2j, 2j+1`` and the taps ``[1, 3, 3, 1] / 8`` over the rows ``2i-1 ..
    2i+2`` (edges replicated). Fitted by least squares to swscale's output (weights
    within 0.01 of these, residual its 8-bit rounding)."""
    shape = chroma.shape
    t = chroma.reshape(-1, 1, *shape[-2:])
    t = nn.functional.pad(t, (0, 0, 1, 1), mode="replicate")
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=t.dtype, device=t.device) / 8.0
    t = nn.functional.conv2d(t, taps.view(1, 1, 4, 1), stride=(2, 1))
    t = nn.functional.avg_pool2d(t, (1, 2))
    return t.reshape(*shape[:-2], *t.shape[-2:])


def coded_qp(qp: torch.Tensor) -> torch.Tensor:
    """The QP x265 codes the intra picture at for ``--qp qp`` (:data:`I_SLICE_QP_OFFSET`
    below it, clipped at 0 as x265 clips); linear between integers."""
    return (qp - I_SLICE_QP_OFFSET).clamp_min(QP_RANGE[0])


def default_rate_model_id(block_size: int, chroma: str) -> str:
    return f"dbpg-rate-b{block_size}-{chroma}"


def load_rate_model(block_size: int, chroma: str) -> BpgRateModel:
    """The shipped calibrated rate model of this configuration, or InputError."""
    from gencodec.errors import InputError
    from gencodec.models import MODELS, model_path

    model_id = default_rate_model_id(block_size, chroma)
    if model_id not in MODELS:
        shipped = ", ".join(k for k in MODELS if k.startswith("dbpg-rate-")) or "none"
        raise InputError(f"no calibrated diff-BPG rate model for block {block_size}, chroma "
                         f"{chroma} (shipped: {shipped}); fit one with scripts/fit_bpg_rate.py "
                         f"and pass rate_model=<folder>")
    return BpgRateModel.from_pretrained(model_path(model_id))


class BpgSurrogate(nn.Module):
    """Differentiable HEVC-intra (BPG) codec: ``forward(x, qp) -> (x_hat, bits)``.

    ``x``: float RGB ``N x 3 x H x W`` in [0, 1] (values outside are clipped, as the
    8-bit encoder input would be); ``qp``: a number or a tensor of shape ``()`` or
    ``(N,)`` in 0..51, the codec's quality (x265's ``--qp``; the picture is coded at
    :func:`coded_qp`); fractional QPs interpolate, so ``bits`` and ``x_hat`` are
    differentiable in it. ``x_hat`` has the shape of ``x``; ``bits`` is ``(N,)``.

    ``temperature`` is the soft-argmin temperature of the mode choice (0: hard argmin),
    ``terms`` the Fourier-rounding terms, ``backend`` ``"torch"`` (reference),
    ``"native"`` (C++ op, CPU) or ``"auto"`` (native when built), ``rate_model`` a
    :class:`BpgRateModel`, its folder, or None for the shipped calibrated one.
    ``ref_grad`` scales the gradient through the reconstructed reference samples (1 =
    the exact closed-loop derivative, which explodes on real pictures, see
    :func:`.bpg_intra.intra_code_reference`; the default keeps it bounded)."""

    def __init__(self, block_size: int = 16, chroma: str = "420", temperature: float = 1.0,
                 terms: int = DEFAULT_TERMS, backend: str = "auto",
                 rate_model: BpgRateModel | str | Path | None = None,
                 ref_grad: float = DEFAULT_REF_GRAD):
        super().__init__()
        from gencodec.codecs_ext.base import chroma_format
        from gencodec.errors import InputError

        self.chroma = chroma_format(chroma, ("420", "444"), "diff-BPG chroma")
        if block_size not in BLOCK_SIZES or (self.chroma == "420" and block_size < 8):
            raise InputError(f"diff-BPG block_size must be one of {BLOCK_SIZES} (at least 8 "
                             f"with 4:2:0 chroma), got {block_size!r}")
        if not (temperature >= 0 and temperature < float("inf")):
            raise InputError(f"diff-BPG temperature must be >= 0, got {temperature!r}")
        if not (isinstance(terms, int) and terms >= 0):
            raise InputError(f"diff-BPG terms must be an integer >= 0, got {terms!r}")
        if not (0.0 <= ref_grad <= 1.0):
            raise InputError(f"diff-BPG ref_grad must be in 0..1, got {ref_grad!r}")
        if backend not in BACKENDS:
            raise InputError(f"diff-BPG backend must be one of {', '.join(BACKENDS)}, "
                             f"got {backend!r}")
        if backend == "native" and not bpg_intra.native_available():
            raise InputError("diff-BPG backend 'native' needs gencodec._native with the dbpg "
                             "ops (rebuild: pip install -e .)")
        if backend == "auto":
            backend = "native" if bpg_intra.native_available() else "torch"
        self.block_size, self.temperature, self.terms = block_size, float(temperature), terms
        self.backend, self.ref_grad = backend, float(ref_grad)
        if rate_model is None:
            rate_model = load_rate_model(block_size, self.chroma)
        elif not isinstance(rate_model, BpgRateModel):
            rate_model = BpgRateModel.from_pretrained(rate_model)
        cfg = rate_model.config
        if (cfg["luma_block"], cfg["chroma"]) != (block_size, self.chroma):
            raise InputError(f"the rate model is for block {cfg['luma_block']}, chroma "
                             f"{cfg['chroma']}; this surrogate codes block {block_size}, "
                             f"chroma {self.chroma}")
        self.rate = rate_model

    # -- input checks ---------------------------------------------------------------
    @staticmethod
    def _check(x: torch.Tensor, qp) -> torch.Tensor:
        from gencodec.errors import InputError

        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"diff-BPG takes RGB images N x 3 x H x W, got {shape}")
        if not x.is_floating_point():
            raise InputError(f"diff-BPG takes float images in [0, 1], got {x.dtype}")
        if min(x.shape) == 0:
            raise InputError(f"diff-BPG got an empty batch or image: {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise InputError("diff-BPG input has NaN or infinite values")
        qp_t = torch.as_tensor(qp, dtype=x.dtype, device=x.device)
        if qp_t.ndim == 0:
            qp_t = qp_t.expand(x.shape[0])
        if qp_t.shape != (x.shape[0],):
            raise InputError(f"diff-BPG qp must be a number or have shape ({x.shape[0]},), "
                             f"got {tuple(qp_t.shape)}")
        lo, hi = QP_RANGE
        if not (torch.isfinite(qp_t).all() and (qp_t >= lo).all() and (qp_t <= hi).all()):
            raise InputError(f"diff-BPG qp must be in {lo:g}..{hi:g}, got "
                             f"{qp_t.detach().cpu().tolist()}")
        return qp_t

    # -- the codec ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, qp) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, yhat_luma, yhat_chroma, qp, qp_c = self.code(x, qp)
        return x_hat, self.rate(yhat_luma, yhat_chroma, qp, qp_c)

    def code(self, x: torch.Tensor, qp):
        """Everything but the rate: ``(x_hat, yhat_luma (N, blocks, n, n), yhat_chroma
        (N, 2, blocks, m, m), coded qp (N,), chroma qp (N,))``."""
        qp = self._check(x, qp)
        n_img, _, h, w = x.shape
        n = self.block_size
        sub = self.chroma == "420"
        pad_h, pad_w = (-h) % n, (-w) % n
        rgb = x.clamp(0.0, 1.0) * 255.0
        if pad_h or pad_w:
            rgb = nn.functional.pad(rgb, (0, pad_w, 0, pad_h), mode="replicate")
        ycc = rgb_to_ycbcr(rgb)
        luma, chroma = ycc[:, 0], ycc[:, 1:]
        if sub:
            chroma = swscale_chroma_420(chroma)
        chroma = chroma + SWSCALE_CHROMA_BIAS[self.chroma]
        qp = coded_qp(qp)
        qp_c = bpg_intra.chroma_qp(qp + CHROMA_QP_OFFSET[self.chroma], sub).clamp_max(
            QP_RANGE[1])
        code = dict(temperature=self.temperature, terms=self.terms, ref_grad=self.ref_grad,
                    backend=self.backend)
        luma_rec, yhat_luma = bpg_intra.intra_code(luma, bpg_intra.qstep_of(qp), n,
                                                   dst=(n == 4), **code)
        ch, cw = chroma.shape[-2:]
        chroma_rec, yhat_chroma = bpg_intra.intra_code(
            chroma.reshape(2 * n_img, ch, cw), bpg_intra.qstep_of(qp_c).repeat_interleave(2),
            n // 2 if sub else n, **code)
        chroma_rec = chroma_rec.reshape(n_img, 2, ch, cw)
        x_hat = (self.decode_colour(luma_rec, chroma_rec)[..., :h, :w] / 255.0).clamp(0.0, 1.0)
        return x_hat, yhat_luma, yhat_chroma.reshape(n_img, 2, *yhat_chroma.shape[1:]), qp, qp_c

    def decode_colour(self, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """RGB ``(N, 3, H, W)`` on the 0..255 scale (unclipped) from decoded planes
        ``luma (N, H, W)``, ``chroma (N, 2, h, w)`` as the codec's decoder (swscale)
        converts them: 4:2:0 chroma repeated 2x2, then :data:`SWSCALE_RGB_BIAS`."""
        if self.chroma == "420":
            chroma = chroma.repeat_interleave(2, -2).repeat_interleave(2, -1)
        rgb = ycbcr_to_rgb(torch.cat([luma.unsqueeze(1), chroma], 1))
        bias = torch.tensor(SWSCALE_RGB_BIAS[self.chroma], dtype=rgb.dtype, device=rgb.device)
        return rgb + bias.view(1, 3, 1, 1)

    def extra_repr(self) -> str:
        return (f"block_size={self.block_size}, chroma={self.chroma}, "
                f"temperature={self.temperature:g}, terms={self.terms}, "
                f"ref_grad={self.ref_grad:g}, backend={self.backend}")
