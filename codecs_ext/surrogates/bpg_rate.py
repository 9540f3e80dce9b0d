"""The rate model of diff-BPG: a factorized entropy model of the rounded transform
coefficients, conditioned on QP and calibrated to real x265-intra bitstreams.

In the spirit of Balle et al. 2018 (the paper's reference [12]): every coefficient
position ``p`` of every channel ``c`` (Y, Cb, Cr) has its own zero-mean density, a
mixture of ``K`` logistics, and a coefficient costs the information content of its
quantisation bin,

    bits(yhat) = -log2 sum_k pi_k(c, p, QP) [sigmoid((1/2 - |yhat|) / s_k(c, p, QP))
                                             - sigmoid((-1/2 - |yhat|) / s_k(c, p, QP))],

with ``log s_k = a[c, p, k] + b[c, k] u + g[c, k] u^2``, mixture logits
``m[c, p, k] + e[c, k] u`` and ``u = (QP_c - 30) / 10``, ``QP_c`` the channel's QP (the
QP the picture is coded at, :func:`.bpg.coded_qp`, 3 below x265's ``--qp``, or its
chroma QP). The bits of every coefficient are then multiplied by
``exp(c0 + c1 u + c2 u^2)``: x265 codes with context-adaptive arithmetic coding, an
intra dead-zone quantiser and adaptive block sizes, and at mid QPs spends fewer bits
than the entropy of any fixed per-position density of the surrogate's coefficients
(which bounds a factorized model from below); this factor is
the calibration that lets the estimate follow it.
Side information (modes, split flags, coded-block flags) costs
``softplus(s0 + s1 u)`` bits per luma block, and the parameter sets and slice header
``exp(h)`` bits per picture. The picture's estimate is the sum, differentiable in
``yhat`` and QP. The parameters are fitted by ``scripts/fit_bpg_rate.py`` so that the
estimate matches the payload size of our ``bpg`` codec (x265 intra) on the same
patches at the same QP (see the model card in ``models/dbpg-rate``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

#: Smallest bin probability priced (as the likelihood bound of learned codecs).
MIN_LIKELIHOOD = 1e-9
WEIGHTS_NAME = "rate.safetensors"
CONFIG_NAME = "config.json"


def _reference_qp(qp: torch.Tensor) -> torch.Tensor:
    return (qp - 30.0) / 10.0


class BpgRateModel(nn.Module):
    """Bits of a picture from its rounded coefficients (see the module docstring).

    ``luma_block`` is the surrogate's luma block size, ``chroma`` its sampling
    (``"420"``: chroma blocks half as large); ``components`` the logistics per density.
    """

    def __init__(self, luma_block: int = 8, chroma: str = "420", components: int = 3):
        super().__init__()
        self.config = {"luma_block": int(luma_block), "chroma": str(chroma),
                       "components": int(components)}
        nl = luma_block
        nc = luma_block // 2 if chroma == "420" else luma_block
        k = components
        init_scale = torch.log(torch.logspace(-1, 1, k))  # 0.1 .. 10 quantisation steps
        self.luma_log_scale = nn.Parameter(init_scale.repeat(1, nl * nl, 1).clone())
        self.chroma_log_scale = nn.Parameter(init_scale.repeat(2, nc * nc, 1).clone())
        self.luma_logit = nn.Parameter(torch.zeros(1, nl * nl, k))
        self.chroma_logit = nn.Parameter(torch.zeros(2, nc * nc, k))
        # d log s / d u: a scale in units of Qstep halves every 6 QP (-10 ln2 / 6 per u)
        self.qp_slope = nn.Parameter(torch.full((3, k), -10.0 * math.log(2.0) / 6.0))
        self.qp_curve = nn.Parameter(torch.zeros(3, k))
        self.logit_slope = nn.Parameter(torch.zeros(3, k))
        self.bits_scale = nn.Parameter(torch.zeros(3))
        self.side = nn.Parameter(torch.tensor([0.0, -0.5]))
        self.header = nn.Parameter(torch.tensor(math.log(8.0 * 100)))

    def _params(self, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
        if channel == 0:
            return self.luma_log_scale[0], self.luma_logit[0]
        return self.chroma_log_scale[channel - 1], self.chroma_logit[channel - 1]

    def coefficient_bits(self, yhat: torch.Tensor, channel: int, qp: torch.Tensor,
                         position: torch.Tensor | None = None) -> torch.Tensor:
        """Bits of each coefficient. Either ``yhat`` is ``(..., n*n)`` with positions
        on the last axis and ``qp`` broadcasts against ``yhat[..., :1]``, or
        ``position`` gives each value's position and ``qp`` is per value."""
        log_scale, logit = self._params(channel)
        u = _reference_qp(qp).unsqueeze(-1)
        if position is not None:
            log_scale, logit = log_scale[position], logit[position]
        log_s = log_scale + self.qp_slope[channel] * u + self.qp_curve[channel] * u * u
        weights = torch.softmax(logit + self.logit_slope[channel] * u, dim=-1)
        mag = yhat.abs().unsqueeze(-1)
        inv_s = torch.exp(-log_s)
        mass = torch.sigmoid((0.5 - mag) * inv_s) - torch.sigmoid((-0.5 - mag) * inv_s)
        likelihood = (weights * mass).sum(-1).clamp_min(MIN_LIKELIHOOD)
        u = u.squeeze(-1)
        scale = self.bits_scale[0] + self.bits_scale[1] * u + self.bits_scale[2] * u * u
        return -torch.log2(likelihood) * torch.exp(scale)

    def side_bits(self, luma_blocks: int | torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        """Side information and headers of a picture with ``luma_blocks`` blocks."""
        u = _reference_qp(qp)
        per_block = nn.functional.softplus(self.side[0] + self.side[1] * u)
        return luma_blocks * per_block + torch.exp(self.header)

    def forward(self, yhat_luma: torch.Tensor, yhat_chroma: torch.Tensor, qp: torch.Tensor,
                qp_chroma: torch.Tensor) -> torch.Tensor:
        """Bits per picture. ``yhat_luma``: ``(N, blocks, n, n)``; ``yhat_chroma``:
        ``(N, 2, blocks, m, m)``; ``qp``, ``qp_chroma``: ``(N,)``."""
        n_img, blocks = yhat_luma.shape[:2]
        bits = self.coefficient_bits(yhat_luma.reshape(n_img, -1, yhat_luma[0, 0].numel()), 0,
                                     qp.reshape(-1, 1, 1)).sum((1, 2))
        for c in (1, 2):
            y = yhat_chroma[:, c - 1]
            bits = bits + self.coefficient_bits(y.reshape(n_img, -1, y[0, 0].numel()), c,
                                                qp_chroma.reshape(-1, 1, 1)).sum((1, 2))
        return bits + self.side_bits(blocks, qp)

    # -- persistence (diffusers style) ------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS_NAME + ".tmp")
        save_file({k: v.detach().float().contiguous() for k, v in self.state_dict().items()},
                  str(tmp))
        tmp.replace(folder / WEIGHTS_NAME)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "BpgRateModel":
        from safetensors.torch import load_file

        from gencodec.errors import InputError

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
            model = cls(**config)
            model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise InputError(f"{folder}: not a diff-BPG rate model ({exc})") from None
        return model
