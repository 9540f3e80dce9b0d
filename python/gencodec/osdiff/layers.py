"""Convolution blocks of the latent codec (G_a, G_s, h_a, h_s and the entropy-parameter
networks), shaped as in the public OSDiff model (ELIC-style residual blocks) so that
its weights load under the same attribute names."""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride)


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """A strided downsampling convolution ("same" padding)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """A transposed convolution that multiplies the size by ``stride`` exactly."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride,
                              output_padding=stride - 1, padding=kernel_size // 2)


class ResidualBlockWithStride(nn.Module):
    """Two 3x3 convolutions, the first strided, around a strided 1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.leaky_relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.downsample = conv1x1(in_ch, out_ch, stride=stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.leaky_relu2(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (self.downsample(x) if self.downsample is not None else x)


def subpel_conv1x1(in_ch: int, out_ch: int, r: int) -> nn.Sequential:
    """1x1 convolution to ``out_ch * r^2`` channels, then pixel shuffle by ``r``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch * r * r, 1), nn.PixelShuffle(r))


class ResidualBlockUpsample(nn.Module):
    """Sub-pixel 2x upsampling with a sub-pixel shortcut."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv1x1(in_ch, out_ch, upsample)
        self.leaky_relu = nn.LeakyReLU()
        self.conv = conv3x3(out_ch, out_ch)
        self.leaky_relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.upsample = subpel_conv1x1(in_ch, out_ch, upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.leaky_relu2(self.conv(self.leaky_relu(self.subpel_conv(x))))
        return out + self.upsample(x)


class ResidualBottleneck(nn.Module):
    """ELIC's residual bottleneck: 1x1 down to N/2, 3x3, 1x1 back up, plus identity."""

    def __init__(self, n: int):
        super().__init__()
        self.branch = nn.Sequential(conv1x1(n, n // 2), nn.GELU(), conv3x3(n // 2, n // 2),
                                    nn.GELU(), conv1x1(n // 2, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ChannelContext(nn.Module):
    """Channel context of an ELIC slice: three 5x5 convolutions over the slices already
    decoded (widths 224 and 128 as the public model; scaled down in tiny configs)."""

    def __init__(self, in_dim: int, out_dim: int, width: tuple[int, int] = (224, 128)):
        super().__init__()
        self.fushion = nn.Sequential(  # (sic) the public model's attribute name
            nn.Conv2d(in_dim, width[0], 5, padding=2), nn.GELU(),
            nn.Conv2d(width[0], width[1], 5, padding=2), nn.GELU(),
            nn.Conv2d(width[1], out_dim, 5, padding=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fushion(x)


class EntropyParameters(nn.Module):
    """1x1 convolutions from the contexts and hyper parameters to (scales, means)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Conv2d(in_dim, out_dim * 5 // 3, 1), nn.GELU(),
            nn.Conv2d(out_dim * 5 // 3, out_dim * 4 // 3, 1), nn.GELU(),
            nn.Conv2d(out_dim * 4 // 3, out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(x)
