"""diff-JPEG: a differentiable surrogate of baseline JPEG as Pillow writes it (libjpeg-turbo,
4:2:0, optimised Huffman tables: what :class:`gencodec.codecs_ext.jpeg.JpegCodec` does).

The stages follow libjpeg step by step, in its integer arithmetic where it has one:

1. the input is quantised to 8 bits (as the image handed to the encoder is);
2. RGB -> YCbCr, JFIF full range, libjpeg's 16-bit fixed-point matrix (``jccolor.c``);
3. chroma 2x2 box downsampling with libjpeg's alternating rounding bias 1, 2 (``jcsample.c``
   ``h2v2_downsample``), on the image edge-replicated to a multiple of 16 (the MCU);
4. 8x8 DCT (JPEG's DCT is the orthonormal DCT-II), division by the IJG-scaled standard
   quantisation tables (:func:`ijg_tables`, libjpeg's ``jpeg_set_quality`` with
   ``force_baseline``), **rounding by the Fourier series** of
   :func:`~gencodec.codecs_ext.surrogates.rounding.fourier_round` (the preprocessing
   paper's Eq. 5, corrected to the series that converges to rounding), dequantisation,
   inverse DCT, clamp to 0..255;
5. "fancy" (triangular, 3:1) chroma upsampling with the decoder's biases 8 and 7
   (``jdsample.c`` ``h2v2_fancy_upsample``) on the chroma planes at their true size
   ``ceil(H/2) x ceil(W/2)``, then YCbCr -> RGB with ``jdcolor.c``'s rounding.

Every pixel-domain rounding of libjpeg (steps 1, 2, 3, 4's clamp to 8 bits, 5) is
applied *straight-through*: the forward value is libjpeg's integer, the gradient that
of the unrounded expression. Only the quantisation of DCT coefficients, where rounding
is what the codec is about, uses the Fourier series (``rounding="fourier"``, default) or
exact rounding with a straight-through gradient (``rounding="exact"``). With
``rounding="exact"`` the reconstruction matches Pillow's decode up to the difference
between libjpeg's integer DCTs and the exact ones (tests/surrogates/test_jpeg.py
measures it).

The quality parameter is differentiable: the tables use libjpeg's exact integers in the
forward pass and the gradient of the continuous IJG formula (scale 5000/q below 50,
200 - 2q above, entry basic * scale / 100 clamped to 1..255), again straight-through
(:func:`ijg_tables`). The rate is :class:`~.jpeg_rate.JpegRateModel`'s estimate from
the quantised coefficients.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gencodec.codecs_ext.surrogates.jpeg_rate import JpegRateModel, ZIGZAG
from gencodec.codecs_ext.surrogates.rounding import DEFAULT_TERMS, fourier_round
from gencodec.errors import InputError

#: ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural order.
STD_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
STD_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32))

QUALITY_MIN, QUALITY_MAX = 1.0, 100.0
ROUNDINGS = ("fourier", "exact")

# libjpeg's fixed-point colour constants: FIX(x) = round(x * 2^16) (jccolor.c, jdcolor.c).
_SCALE = 65536.0
_RGB_TO_YCC = ((19595, 38470, 7471), (-11059, -21709, 32768), (32768, -27439, -5329))
_CR_R, _CB_G, _CR_G, _CB_B = 91881, -22554, -46802, 116130


def _straight_through(continuous: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``exact``'s value with ``continuous``'s gradient."""
    return continuous + (exact - continuous).detach()


def _st_floor(v: torch.Tensor) -> torch.Tensor:
    return _straight_through(v, torch.floor(v))


def _clamp_byte(v: torch.Tensor) -> torch.Tensor:
    """Clamp to 0..255 as libjpeg's range limit; the gradient stops outside, as there."""
    return v.clamp(0.0, 255.0)


def ijg_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma and chroma quantisation tables (``N x 64``, natural order) for qualities
    ``N`` in [1, 100], as libjpeg's ``jpeg_set_quality(cinfo, q, force_baseline=TRUE)``:
    scale ``5000 // q`` below 50 and ``200 - 2 q`` above, entries
    ``(basic * scale + 50) // 100`` clamped to 1..255. Non-integer qualities use the
    integer part of the scale, so integer ones give libjpeg's tables exactly.

    Differentiable in ``quality`` straight-through: the gradient is that of the
    continuous formula ``basic * scale(q) / 100`` (zero where it is clamped)."""
    q = quality.reshape(-1, 1)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    out = []
    for basic in (STD_LUMA_TABLE, STD_CHROMA_TABLE):
        b = torch.tensor(basic, dtype=q.dtype, device=q.device)
        exact = torch.floor((b * torch.floor(scale.detach()) + 50.0) / 100.0).clamp(1.0, 255.0)
        continuous = (b * scale / 100.0).clamp(1.0, 255.0)
        out.append(_straight_through(continuous, exact))
    return out[0], out[1]


def _dct_matrix(dtype, device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II (JPEG's FDCT is D X D^T)."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """8-bit RGB (N x 3 x H x W, values 0..255) to JFIF YCbCr as ``jccolor.c``:
    ``(FIX(a) r + FIX(b) g + FIX(c) b + offset) >> 16``."""
    m = torch.tensor(_RGB_TO_YCC, dtype=rgb.dtype, device=rgb.device)
    v = torch.einsum("ij,njhw->nihw", m, rgb)
    offset = torch.tensor([32768.0, 128 * _SCALE + 32767, 128 * _SCALE + 32767],
                          dtype=rgb.dtype, device=rgb.device)
    return _st_floor((v + offset[:, None, None]) / _SCALE)


def ycc_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """JFIF YCbCr (0..255) to RGB as ``jdcolor.c``'s ``ycc_rgb_convert`` (table lookups of
    ``(FIX(c) x + ONE_HALF) >> 16``), clamped to 0..255."""
    y, cb, cr = ycc[:, 0], ycc[:, 1] - 128.0, ycc[:, 2] - 128.0
    r = y + _st_floor((_CR_R * cr + 32768.0) / _SCALE)
    g = y + _st_floor((_CB_G * cb + _CR_G * cr + 32768.0) / _SCALE)
    b = y + _st_floor((_CB_B * cb + 32768.0) / _SCALE)
    return _clamp_byte(torch.stack([r, g, b], dim=1))


def downsample_h2v2(c: torch.Tensor) -> torch.Tensor:
    """2x2 box average with ``jcsample.c``'s bias 1, 2, 1, 2... along each row:
    ``(sum + bias) >> 2``. ``c`` is ``N x C x H x W`` with even H, W."""
    s = F.avg_pool2d(c, 2) * 4.0
    bias = 1.0 + (torch.arange(s.shape[-1], device=c.device) % 2).to(c.dtype)
    return _st_floor((s + bias) / 4.0)


def upsample_h2v2_fancy(c: torch.Tensor) -> torch.Tensor:
    """``jdsample.c``'s ``h2v2_fancy_upsample``: the triangle filter (3/4, 1/4 in each
    direction, edges replicated) in integers, ``(3 a + b + 8) >> 4`` for even output
    columns and ``(3 a + b + 7) >> 4`` for odd ones, where ``a``, ``b`` are the nearer
    and farther column sums ``3 * row + nearer row``."""
    p = F.pad(c, (1, 1, 1, 1), mode="replicate")
    mid = p[..., 1:-1, :]
    up, down = 3 * mid + p[..., :-2, :], 3 * mid + p[..., 2:, :]  # output rows 2i, 2i+1
    rows = torch.stack([up, down], dim=-2).flatten(-3, -2)  # N x C x 2H x (W + 2)
    centre = rows[..., 1:-1]
    left = (3 * centre + rows[..., :-2] + 8.0) / 16.0
    right = (3 * centre + rows[..., 2:] + 7.0) / 16.0
    return _st_floor(torch.stack([left, right], dim=-1).flatten(-2))


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """``N x H x W`` (multiples of 8) to ``N x H/8 x W/8 x 8 x 8``."""
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    n, bh, bw = blocks.shape[:3]
    return blocks.transpose(2, 3).reshape(n, bh * 8, bw * 8)


def _mcu_order(blocks: torch.Tensor) -> torch.Tensor:
    """Luma blocks (``N x BH x BW x ...``, even BH, BW) in the order an interleaved
    4:2:0 scan codes them: MCU by MCU, the 2x2 blocks of each in raster order."""
    n, bh, bw = blocks.shape[:3]
    rest = blocks.shape[3:]
    b = blocks.reshape(n, bh // 2, 2, bw // 2, 2, *rest).transpose(2, 3)
    return b.reshape(n, bh * bw, *rest)


def check_input(x: torch.Tensor, quality) -> torch.Tensor:
    """Validate ``x`` (float ``N x 3 x H x W``, finite) and ``quality`` (a number or a
    tensor of N or 1 numbers, each in [1, 100]); return the qualities as an ``N``
    tensor of ``x``'s dtype and device. Errors are :class:`InputError`."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError(f"x must be a float tensor, got {type(x).__name__}"
                         f"{'' if not isinstance(x, torch.Tensor) else ' of ' + str(x.dtype)}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0 or min(x.shape[2:]) == 0:
        raise InputError(f"x must be N x 3 x H x W RGB with N, H, W >= 1, got shape "
                         f"{tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("x has non-finite values (NaN or infinity)")
    q = torch.as_tensor(quality, dtype=x.dtype, device=x.device).reshape(-1)
    if q.numel() == 1:
        q = q.expand(x.shape[0])
    if q.numel() != x.shape[0]:
        raise InputError(f"quality has {q.numel()} values for a batch of {x.shape[0]}")
    if not bool(torch.isfinite(q).all()) or bool(((q < QUALITY_MIN) | (q > QUALITY_MAX)).any()):
        raise InputError(f"JPEG quality must be in {QUALITY_MIN:g}..{QUALITY_MAX:g}, got "
                         f"{q.detach().cpu().tolist()}")
    return q


class JpegSurrogate(nn.Module):
    """diff-JPEG (module docstring): ``forward(x, quality) -> (x_hat, bits)``.

    ``x``: float RGB ``N x 3 x H x W`` in [0, 1] (values outside are clipped, as the
    conversion to 8 bits does); any H, W (edge-replicated to a multiple of 16 as libjpeg
    pads the MCUs, and cropped back). ``quality``: a number or a tensor of ``N``
    qualities in [1, 100] (JPEG's IJG quality; may require grad). Returns the
    reconstruction ``N x 3 x H x W`` in [0, 1] and the estimated size of Pillow's
    optimised JPEG file, in bits per image (``N``), both differentiable in ``x`` and
    ``quality``.

    ``terms``: Fourier terms of the coefficient rounding; ``rounding``: ``"fourier"``
    (the paper's Eq. 5, corrected) or ``"exact"`` (round, straight-through gradient);
    ``rate_model``: a :class:`JpegRateModel`, the path of its weights, or None for the
    shipped, calibrated ``djpeg-rate``.

    The 8-bit conversion of the input passes the gradient straight through (clipping
    included), so a preprocessor whose output leaves [0, 1] is still pulled back."""

    def __init__(self, terms: int = DEFAULT_TERMS, rounding: str = "fourier",
                 rate_model: JpegRateModel | str | Path | None = None):
        super().__init__()
        if rounding not in ROUNDINGS:
            raise InputError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        if int(terms) != terms or terms < 1:
            raise InputError(f"terms must be a positive integer, got {terms!r}")
        self.terms = int(terms)
        self.rounding = rounding
        self.rate = (rate_model if isinstance(rate_model, JpegRateModel)
                     else JpegRateModel.load(rate_model))

    def _round(self, y: torch.Tensor) -> torch.Tensor:
        if self.rounding == "exact":
            return _straight_through(y, torch.round(y))
        return fourier_round(y, self.terms)

    def _code_plane(self, plane: torch.Tensor, table: torch.Tensor):
        """DCT, quantise, dequantise, IDCT one component (``N x H x W``, level-shifted).
        Returns the reconstruction and the unrounded quantised coefficients ``y``
        (``N x BH x BW x 64``, zigzag order) for the rate model."""
        d = _dct_matrix(plane.dtype, plane.device)
        coef = d @ _blocks(plane) @ d.T
        q = table.reshape(-1, 1, 1, 8, 8)
        y = coef / q
        rec = d.T @ (self._round(y) * q) @ d
        zz = torch.as_tensor(ZIGZAG, device=plane.device)
        return _unblocks(rec), y.flatten(-2)[..., zz]

    def forward(self, x: torch.Tensor, quality) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, coefficients = self.analyse(x, quality)
        return x_hat, self.rate(*coefficients)

    def analyse(self, x: torch.Tensor, quality):
        """The reconstruction and the unrounded quantised coefficients the rate model
        reads: ``(luma in MCU order, Cb, Cr)``, each ``N x blocks x 64`` in zigzag order."""
        q = check_input(x, quality)
        n, _, h, w = x.shape
        x8 = _straight_through(x, torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0) * 255.0
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            x8 = F.pad(x8, (0, pw, 0, ph), mode="replicate")
        ycc = rgb_to_ycc(x8)
        chroma = downsample_h2v2(ycc[:, 1:])
        luma_table, chroma_table = ijg_tables(q)

        y_rec, y_coef = self._code_plane(ycc[:, 0] - 128.0, luma_table)
        c_rec, c_coef = [], []
        for i in range(2):
            r, c = self._code_plane(chroma[:, i] - 128.0, chroma_table)
            c_rec.append(r)
            c_coef.append(c)

        def to_byte(v):
            return _clamp_byte(_st_floor(v + 128.0 + 0.5))

        luma = to_byte(y_rec)[:, None, :h, :w]
        ch, cw = (h + 1) // 2, (w + 1) // 2  # the chroma planes' true size
        chroma_rec = to_byte(torch.stack(c_rec, dim=1))[..., :ch, :cw]
        chroma_up = upsample_h2v2_fancy(chroma_rec)[..., :h, :w]
        x_hat = ycc_to_rgb(torch.cat([luma, chroma_up], dim=1)) / 255.0

        return x_hat, (_mcu_order(y_coef), c_coef[0].flatten(1, 2), c_coef[1].flatten(1, 2))
