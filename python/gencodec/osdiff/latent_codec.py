"""The learned latent codec of OSDiff (paper Eq. 1): y_hat = Q(G_a(y0)), y_c = G_s(y_hat).

G_a halves the SD latent once more (to 1/16 of the image side, M channels); a
hyperprior (h_a, h_s; z at 1/64) and an ELIC context model code y_hat: the M channels
are cut into uneven slices, each slice is coded in two checkerboard halves (anchors,
then non-anchors with a local 5x5 context of the anchors), and every slice after the
first also sees the slices before it (channel context). Residuals ``round(y - mean)``
are coded under Gaussians whose scales are rounded up to a table
(:mod:`gencodec.osdiff.entropy`). The layout and the attribute names follow the
public model's ``LFGCM``, so its weights load (:mod:`gencodec.osdiff.keymap`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gencodec.osdiff.entropy import (RESIDUAL_LIMIT, EntropyBottleneck, GaussianConditional,
                                     SymbolCoder, SymbolDecoder, quantize)
from gencodec.osdiff.layers import (ChannelContext, EntropyParameters, ResidualBlockUpsample,
                                    ResidualBlockWithStride, ResidualBottleneck, conv,
                                    conv1x1, conv3x3, deconv)

#: Latent sides are coded in multiples of this (G_a halves, the hyperprior quarters).
LATENT_MULTIPLE = 8


def anchor_mask(h: int, w: int, device) -> torch.Tensor:
    """The checkerboard anchors: positions with (row + column) odd (decoded first)."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == 1)


class LatentCodec(nn.Module):
    """G_a, hyperprior, ELIC slices with checkerboard context, G_s."""

    def __init__(self, latent_channels: int = 4, enc_mid: int = 64, n: int = 192, m: int = 320,
                 slices: tuple[int, ...] = (8, 8, 8, 8, 16, 16, 32, 32, 96, 96),
                 context_width: tuple[int, int] = (224, 128)):
        super().__init__()
        if sum(slices) != m:
            raise ValueError(f"slices {slices} sum to {sum(slices)}, not M = {m}")
        self.slices = tuple(slices)
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(latent_channels, enc_mid),
            *(ResidualBottleneck(enc_mid) for _ in range(3)), conv3x3(enc_mid, m))
        self.h_a = nn.Sequential(conv3x3(m, n), nn.GELU(), conv(n, n), nn.GELU(), conv(n, n),
                                 conv1x1(n, n))
        self.h_s = nn.Sequential(deconv(n, m), nn.GELU(), deconv(m, m * 3 // 2), nn.GELU(),
                                 deconv(m * 3 // 2, m * 2, kernel_size=3, stride=1))
        self.g_s = nn.Sequential(
            conv3x3(m, n), *(ResidualBottleneck(n) for _ in range(3)),
            ResidualBlockUpsample(n, n), *(ResidualBottleneck(n) for _ in range(3)),
            conv3x3(n, latent_channels))
        self.local_context = nn.ModuleList(
            nn.Conv2d(c, 2 * c, 5, padding=2) for c in slices)
        # slice 0 has no channel context: index k holds the context of slice k + 1
        self.channel_context = nn.ModuleList(
            ChannelContext(sum(slices[:k]), 2 * slices[k], context_width)
            for k in range(1, len(slices)))
        self.entropy_parameters_anchor = nn.ModuleList(
            EntropyParameters(2 * m + (2 * c if k else 0), 2 * c) for k, c in enumerate(slices))
        self.entropy_parameters_nonanchor = nn.ModuleList(
            EntropyParameters(2 * m + (4 * c if k else 2 * c), 2 * c)
            for k, c in enumerate(slices))
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional()

    # -- the slice loop shared by training, encoding and decoding -----------------------
    def _slice_params(self, k: int, hyper: torch.Tensor, done: list[torch.Tensor]):
        """(channel context or None, anchor scales, anchor means) of slice k."""
        ctx = self.channel_context[k - 1](torch.cat(done, 1)) if k else None
        inp = hyper if ctx is None else torch.cat([ctx, hyper], 1)
        scales, means = self.entropy_parameters_anchor[k](inp).chunk(2, 1)
        return ctx, scales, means

    def _nonanchor_params(self, k: int, anchor_hat, ctx, hyper):
        local = self.local_context[k](anchor_hat)
        parts = [local, hyper] if ctx is None else [local, ctx, hyper]
        return self.entropy_parameters_nonanchor[k](torch.cat(parts, 1)).chunk(2, 1)

    def forward(self, y0: torch.Tensor, training: bool = True):
        """Eq. 1 with the training proxies: y_c and the likelihoods of y and z (noisy
        for the rate term when ``training``, of the rounded values otherwise). The
        decoder path always sees rounded values (straight-through gradients)."""
        y = self.g_a(y0)
        z = self.h_a(y)
        _, z_lik = self.entropy_bottleneck(z, training)
        medians = self.entropy_bottleneck.medians().detach().view(1, -1, 1, 1)
        hyper = self.h_s(quantize(z, "ste", medians))
        mask = anchor_mask(y.shape[-2], y.shape[-1], y.device)
        done, liks = [], []
        for k, y_k in enumerate(y.split(self.slices, 1)):
            ctx, s_a, m_a = self._slice_params(k, hyper, done)
            anchor = torch.where(mask, quantize(y_k, "ste", m_a), torch.zeros_like(y_k))
            s_n, m_n = self._nonanchor_params(k, anchor, ctx, hyper)
            scales, means = torch.where(mask, s_a, s_n), torch.where(mask, m_a, m_n)
            values = quantize(y_k, "noise" if training else "round", means) - means
            liks.append(self.gaussian_conditional.likelihood(values, scales))
            done.append(torch.where(mask, anchor, quantize(y_k, "ste", m_n)))
        y_hat = torch.cat(done, 1)
        return self.g_s(y_hat), y_hat, {"y": torch.cat(liks, 1), "z": z_lik}

    @property
    def dtype(self) -> torch.dtype:
        return self.entropy_bottleneck.quantiles.dtype

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def update(self) -> None:
        self.entropy_bottleneck.update()

    # -- real coding (batch of one) ------------------------------------------------------
    # The coder runs in the module's dtype. The codec runs it in float64: the table
    # index of each scale and the mean each residual is added to are then the same on
    # every thread count and machine to ~1e-16 (in float32, where convolutions sum in
    # another order, about one scale in a million would land in the other table cell
    # and the decoder would lose sync).
    @torch.no_grad()
    def compress(self, y0: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """(the ANS words, y_hat) of one latent (1, C, h, w); h and w multiples of 8."""
        if y0.shape[0] != 1:
            raise ValueError("compress codes one image at a time")
        y = self.g_a(y0.to(self.dtype))
        z = self.h_a(y)
        eb = self.entropy_bottleneck
        z_idx, z_hat = eb.symbols(z)
        coder = SymbolCoder()
        coder.add_z(z_idx, eb.categoricals())
        hyper = self.h_s(z_hat)
        mask = anchor_mask(y.shape[-2], y.shape[-1], y.device)
        done = []
        for k, y_k in enumerate(y.split(self.slices, 1)):
            ctx, s_a, m_a = self._slice_params(k, hyper, done)
            anchor = self._code_half(coder, y_k, s_a, m_a, mask)
            s_n, m_n = self._nonanchor_params(k, anchor, ctx, hyper)
            done.append(anchor + self._code_half(coder, y_k, s_n, m_n, ~mask))
        return coder.encode(), torch.cat(done, 1)

    def _code_half(self, coder: SymbolCoder, y_k, scales, means, mask) -> torch.Tensor:
        """Code y_k at the ``mask`` positions; y_hat there, zeros elsewhere."""
        q = torch.round(y_k - means).clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT)
        gc = self.gaussian_conditional
        coder.add_residuals(q[..., mask], gc.stds(gc.indexes(scales[..., mask])))
        return torch.where(mask, q + means, torch.zeros_like(y_k))

    @torch.no_grad()
    def decompress(self, words: np.ndarray, latent_hw: tuple[int, int]) -> torch.Tensor:
        """y_hat of a latent of ``latent_hw`` (the SD latent's size) from ANS words."""
        h, w = latent_hw
        if h % 8 or w % 8:
            raise ValueError(f"latent size {h}x{w} is not a multiple of 8")
        eb = self.entropy_bottleneck
        device = eb.quantiles.device
        dec = SymbolDecoder(words)
        zh, zw = h // 8, w // 8
        z_hat = eb.dequantize(dec.z(eb.categoricals(), zh * zw), (eb.channels, zh, zw))
        hyper = self.h_s(z_hat)
        mask = anchor_mask(h // 2, w // 2, device)
        done = []
        for k, c in enumerate(self.slices):
            ctx, s_a, m_a = self._slice_params(k, hyper, done)
            anchor = self._decode_half(dec, s_a, m_a, mask)
            s_n, m_n = self._nonanchor_params(k, anchor, ctx, hyper)
            done.append(anchor + self._decode_half(dec, s_n, m_n, ~mask))
        dec.finish()
        return torch.cat(done, 1)

    def _decode_half(self, dec: SymbolDecoder, scales, means, mask) -> torch.Tensor:
        gc = self.gaussian_conditional
        q = dec.residuals(gc.stds(gc.indexes(scales[..., mask])))
        out = torch.zeros_like(means)
        out[..., mask] = torch.from_numpy(q).to(means.device, means.dtype).view(
            *means.shape[:2], -1)
        return torch.where(mask, out + means, torch.zeros_like(means))
