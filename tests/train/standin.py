"""A tiny differentiable stand-in for a codec surrogate, for the trainer's tests only.

Same interface as ``gencodec.codecs_ext.surrogates`` (``forward(x, q) -> (x_hat,
bits)``, JPEG-like quality: higher = better): the reconstruction is ``x`` pulled
towards its 3x3 box blur by ``1 - q / 100``, and the bits grow with the image's
gradient energy and the quality. Both are differentiable in ``x``, so a preprocessor
can lower the rate by smoothing, which is all the trainer needs to see."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class StandInSurrogate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("bits_per_unit", torch.tensor(400.0))

    def forward(self, x: torch.Tensor, q):
        s = 1.0 - float(q) / 100.0
        blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x_hat = x + s * (blur - x)
        energy = ((x[..., 1:, :] - x[..., :-1, :]) ** 2 + 1e-4).sqrt().mean((1, 2, 3)) \
            + ((x[..., :, 1:] - x[..., :, :-1]) ** 2 + 1e-4).sqrt().mean((1, 2, 3))
        bits = self.bits_per_unit * (1.5 - s) * energy * x.shape[-1] * x.shape[-2] / 64.0
        return x_hat, bits
