"""OSDiff's discriminator in the diffusion UNet's feature space (Jia et al., Sec. II-C,
Eqs. 4, 12 and 14).

The real latent ``y_0 = E_SD(x)`` and the reconstruction ``y_r`` are taken to a random
timestep ``t`` of the forward process (Eq. 5, the same ``t`` and noise for both), the
UNet's input and middle blocks turn ``y_0^t`` and ``y_r^t`` into feature maps
(:meth:`gencodec.osdiff.model.OSDiff.unet_features`), and a light head per feature map
scores every position ("passed to a MLP for discrimination scoring"): a GroupNorm, a
3 x 3 convolution to ``hidden`` channels, SiLU and a 1 x 1 convolution to one logit, so
each head is a per-position MLP over a 3 x 3 neighbourhood, valid at any resolution.
``D(.) = sigmoid(logit)``; the losses are the paper's logistic ones, written with
``softplus`` (``-log sigmoid(l) = softplus(-l)``, ``-log(1 - sigmoid(l)) = softplus(l)``)
and averaged over positions and heads:

* Eq. 12, the non-saturating generator loss ``L_G = -E_t log D(y_r^t)``;
* Eq. 14, ``L_D = -E_t log(1 - D(y_r^t)) - E_t log D(y_0^t)``.

**Feature network.** The paper also updates the copy of the input and middle blocks
that extracts the features (``f_d``, Sec. III-A); here the features come from the
frozen UNet itself, so the discriminator adds only its heads (6.3 M parameters for
SD 2.1's 13 feature maps at ``hidden = 64``) and no second copy of the UNet's encoder
(352 M parameters: down blocks, middle block, time embedding) has to be held,
optimised and checkpointed. The public training code scores only the middle block's
output, with a head fixed to 32 x 32 latents; the heads here see every input-block
resolution.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from gencodec.osdiff.control import find_denominator

__all__ = ["FeatureDiscriminator", "discriminator_loss", "generator_loss", "renoise"]


def _head(channels: int, hidden: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.GroupNorm(find_denominator(channels, 32), channels),
        torch.nn.Conv2d(channels, hidden, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(hidden, 1, 1))


class FeatureDiscriminator(torch.nn.Module):
    """One light head per UNet feature map (module docstring).

    ``channels``: the channel count of each feature map, in the order
    ``unet_features`` returns them."""

    def __init__(self, channels: Sequence[int], hidden: int = 64):
        super().__init__()
        if not channels:
            raise ValueError("the discriminator needs at least one feature map")
        if hidden < 1:
            raise ValueError(f"hidden width must be at least 1, got {hidden}")
        self.channels, self.hidden = tuple(int(c) for c in channels), int(hidden)
        self.heads = torch.nn.ModuleList(_head(c, self.hidden) for c in self.channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The logit maps (N x 1 x h x w), one per feature map."""
        if len(features) != len(self.heads):
            raise ValueError(f"{len(features)} feature maps for {len(self.heads)} heads")
        # contiguous: the VAE's latents come channels-last, and GroupNorm's CPU backward
        # crashes (torch 2.13) on a channels-last input that takes no gradient
        return [head(f.float().contiguous()) for head, f in zip(self.heads, features)]


def renoise(y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
            alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``y^t = sqrt(abar_t) y + sqrt(1 - abar_t) noise``: ``y`` taken to timestep ``t``
    (one per sample) by the forward process (Eq. 5)."""
    abar = alphas_cumprod.to(y.device, torch.float64)[t.to(y.device)].view(-1, 1, 1, 1)
    return abar.sqrt().to(y.dtype) * y + (1.0 - abar).sqrt().to(y.dtype) * noise


def _mean(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([x.mean() for x in terms]).mean()


def generator_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 12: ``-log D(y_r^t)`` = ``softplus(-logit)``, mean over positions and heads."""
    return _mean([F.softplus(-l) for l in fake_logits])


def discriminator_loss(real_logits: Sequence[torch.Tensor],
                       fake_logits: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Eq. 14 (``loss``) and its real and fake halves; also the fraction of positions
    the discriminator gets right (``accuracy``, logit > 0 for real, < 0 for fake)."""
    real = _mean([F.softplus(-l) for l in real_logits])
    fake = _mean([F.softplus(l) for l in fake_logits])
    with torch.no_grad():
        right = _mean([(l > 0).float() for l in real_logits] +
                      [(l < 0).float() for l in fake_logits])
    return {"loss": real + fake, "real": real, "fake": fake, "accuracy": right}
