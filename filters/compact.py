"""The compact preprocessing network: the architecture of the embedded default.

A plain residual CNN that runs at 1/``scale`` resolution (pixel unshuffle), small
enough for real-time 1080p on a CPU core pair once trained (the training issue
distils the one-step diffusion model into it)::

    x (3, H, W) -> unshuffle(s) -> conv3x3 -> [conv3x3 - ReLU - conv3x3 (+)] x blocks
                -> conv3x3 -> shuffle(s) -> + x -> clamp [0, 1]

It has no normalisation and no attention, so it is local: the output at a pixel
depends on the input within :attr:`receptive_field` pixels, and tiled inference with
that much context equals whole-frame inference. The global skip makes the network
predict a correction to its input.

With ``keep_means = k > 1`` the correction is projected so that it sums to zero over
every k x k block of the frame (blocks from the top-left pixel): the output keeps the
input's k x k block means (up to the final clamp to [0, 1]) and can change only the
detail inside the blocks. GMSD and HaarPSI compare images after 2 x 2 average pooling
(their model of viewing distance), FSIM and VSI after k x k pooling with k about
min(H, W) / 256, so with k = 2 such a model only removes or reshapes detail those
metrics do not resolve, and never moves what they see.

With ``chroma_sigma = s > 0`` a parameter-free :class:`ChromaLowPass` follows: the
output's chroma is blurred with a Gaussian of s pixels and its BT.601 luma is kept
exactly (so the k x k block means of the luma are still the input's).

Saved as ``gencodec_filter.json`` (architecture ``compact`` and the config) plus
``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from gencodec.errors import InputError
from gencodec.filters.model import CONFIG_NAME, FrameModel, read_config, write_config

WEIGHTS_NAME = "model.safetensors"
#: The widest chroma low-pass a compact model takes (Gaussian sigma, pixels).
MAX_CHROMA_SIGMA = 16.0


@dataclasses.dataclass(frozen=True)
class CompactConfig:
    channels: int = 32
    blocks: int = 4
    scale: int = 2
    keep_means: int = 1  # k > 1: the correction has zero mean over every k x k block
    chroma_sigma: float = 0.0  # > 0: Gaussian low-pass of the output's chroma (pixels)


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class ChromaLowPass(nn.Module):
    """Gaussian low-pass of an RGB image's chroma that leaves its luma unchanged.

    Luma is Y = 0.299 R + 0.587 G + 0.114 B (BT.601: the Y plane JPEG, WebP and BPG
    code and the Y channel GMSD, HaarPSI and FSIM compare). The chroma residual
    c = x - Y (its own luma is zero, as the weights sum to 1) is blurred separably with
    a Gaussian of ``sigma`` pixels, edge pixels replicated, and added back:
    out = Y + G * c, whose luma is Y again. Viewers resolve chroma far more coarsely than
    luma (the reason for 4:2:0), while WebP spends 13-41 % of a photo's bits on it (the
    training photos, models/gencodec-preprocess-v2/README.md). ``sigma = 0`` is the
    identity.
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.radius = int(math.ceil(3.0 * sigma)) if sigma > 0 else 0
        taps = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (taps / sigma) ** 2) if sigma > 0 else torch.ones(1)
        g = (g / g.sum()).repeat(3, 1, 1, 1)  # (3, 1, 1, taps): one filter per channel
        self.register_buffer("row", g, persistent=False)
        self.register_buffer("column", g.transpose(2, 3).contiguous(), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return x
        y = (x * self.luma).sum(dim=1, keepdim=True)
        p = self.radius
        c = F.pad(x - y, (p, p, p, p), mode="replicate")
        # channels-last: PyTorch's depthwise CPU convolution is about 3x faster in that
        # layout (720p, batch of 4, 2 cores: 41 against 120 ms a frame), with the same
        # result bit for bit
        c = c.contiguous(memory_format=torch.channels_last)
        c = F.conv2d(F.conv2d(c, self.row, groups=3), self.column, groups=3)
        return y + c


class CompactFilterNet(FrameModel):
    """Residual CNN at 1/scale resolution (see the module docstring)."""

    architecture = "compact"
    scriptable = True
    __jit_ignored_attributes__ = ["config"]

    def __init__(self, channels: int = 32, blocks: int = 4, scale: int = 2,
                 keep_means: int = 1, chroma_sigma: float = 0.0):
        super().__init__()
        if channels < 1 or blocks < 0 or scale < 1 or keep_means < 1:
            raise ValueError("compact: channels >= 1, blocks >= 0, scale >= 1, "
                             "keep_means >= 1")
        if not 0.0 <= chroma_sigma <= MAX_CHROMA_SIGMA:
            raise ValueError(f"compact: chroma_sigma must be in [0, {MAX_CHROMA_SIGMA:g}] "
                             "pixels")
        self.config = CompactConfig(channels, blocks, scale, keep_means, float(chroma_sigma))
        self.keep_means = keep_means
        self.chroma = ChromaLowPass(chroma_sigma)
        s2 = 3 * scale * scale
        self.unshuffle = nn.PixelUnshuffle(scale)
        self.conv_in = nn.Conv2d(s2, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)])
        self.conv_out = nn.Conv2d(channels, s2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.multiple = math.lcm(scale, keep_means)
        # 2 + 2 * blocks 3x3 convolutions at 1/scale resolution, then the block means.
        self.receptive_field = (scale * (2 + 2 * blocks) + scale - 1 + keep_means - 1
                                + self.chroma.radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.unshuffle(x))
        r = self.shuffle(self.conv_out(self.body(h)))
        k = self.keep_means
        if k > 1:
            r = r - F.interpolate(F.avg_pool2d(r, k), scale_factor=float(k), mode="nearest")
        return self.chroma(x + r).clamp(0.0, 1.0)

    # -- persistence ---------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        write_config(d, {"architecture": self.architecture,
                         **dataclasses.asdict(self.config)})
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(d / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **_) -> "CompactFilterNet":
        d = Path(directory)
        cfg = read_config(d)
        values = {}
        for f in dataclasses.fields(CompactConfig):
            v = cfg.get(f.name, f.default)
            kinds = (int, float) if f.type in (float, "float") else (int,)
            if isinstance(v, bool) or not isinstance(v, kinds):
                what = "a number" if float in kinds else "a whole number"
                raise InputError(f"{d / CONFIG_NAME}: bad compact config: {f.name} must be "
                                 f"{what}, not {v!r}")
            values[f.name] = v
        try:
            model = cls(**values)
        except ValueError as exc:
            raise InputError(f"{d / CONFIG_NAME}: bad compact config: {exc}") from None
        weights = d / WEIGHTS_NAME
        if not weights.is_file():
            raise InputError(f"{d}: no {WEIGHTS_NAME}")
        try:
            state = load_file(str(weights))
        except (OSError, SafetensorError) as exc:
            raise InputError(f"{weights}: unreadable weights: {exc}") from None
        mismatch = _state_mismatch(model.state_dict(), state)
        if mismatch:
            config = ", ".join(f"{k}={v}" for k, v in values.items())
            raise InputError(f"{weights}: weights do not fit the config ({config}): {mismatch}")
        model.load_state_dict(state)
        return model.eval()


def _state_mismatch(want: dict, got: dict) -> str:
    """One line on how a state dict differs from the model's ("" when it fits)."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [k for k in want if k in got and tuple(got[k].shape) != tuple(want[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{k} is {list(got[k].shape)} in the file, {list(want[k].shape)} in "
                     f"the model" + (f" (and {len(shapes) - 1} more)" if len(shapes) > 1
                                     else ""))
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]}")
    return "; ".join(parts)
