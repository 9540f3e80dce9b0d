"""The one interface DiffC needs from a diffusion model.

A backbone maps images to the space the diffusion runs in (pixels, a fixed orthogonal
transform, or a VAE latent), names its noise schedule (``alphas_cumprod``) and predicts
the noise ``eps(x_t, t)`` (with its conditioning fixed at load time). From these the
base class derives the reverse step p(x_j | x_i) for any i > j
(:func:`gencodec.diffusion.ddpm.posterior`); a model that knows its reverse step
exactly (the Gaussian spectral model) overrides :meth:`Backbone.reverse_predictor`.

Arrays are float32 numpy arrays shaped like the latent (C, H, W); backbones that run
on torch convert at their edge.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gencodec.diffusion import ddpm
from gencodec.errors import InputError

#: (mu_p, sigma_p) of a diagonal Gaussian; sigma may be a scalar.
Gaussian = tuple[np.ndarray, "np.ndarray | float"]


class Backbone(abc.ABC):
    """A pretrained diffusion model as DiffC sees it."""

    #: Registry id or path it was loaded from.
    name: str = ""
    #: alphas_cumprod over the training timesteps 0..T-1 (float64).
    alphas_cumprod: np.ndarray
    #: Image sides are padded (edge replication) to a multiple of this.
    pad_multiple: int = 1
    #: Image sizes accepted, in pixels per side: outside, encoding is refused.
    min_side: int = 1
    max_side: int = 4096
    device: str = "cpu"

    # -- what implementations provide -------------------------------------------------
    @abc.abstractmethod
    def weights_sha256(self) -> bytes:
        """sha256 (32 bytes) of everything that changes the model's outputs."""

    @abc.abstractmethod
    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of x_0 for a (padded) image of this size."""

    @abc.abstractmethod
    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 (padded) -> x_0 in the diffusion space."""

    @abc.abstractmethod
    def decode_latent(self, x0: np.ndarray) -> np.ndarray:
        """x_0 in the diffusion space -> HxWx3 uint8."""

    @abc.abstractmethod
    def eps(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """The model's noise prediction at integer timestep ``t``."""

    # -- derived -------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def prior(self, x0_shape: tuple[int, ...]) -> Gaussian:
        """p(x_T) at T = num_timesteps - 1: the standard normal."""
        return np.zeros(x0_shape, np.float32), 1.0

    def x0_prediction(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """E[x_0 | x_t] as the model estimates it (DiffC's one-step 'x0' reconstruction)."""
        return ddpm.x0_from_eps(self.alphas_cumprod, t, x_t, self.eps(x_t, t)).astype(np.float32)

    def reverse_predictor(self, x_i: np.ndarray, i: int) -> Callable[[int], Gaussian]:
        """One model evaluation at (x_i, i) -> a function j -> p(x_j | x_i) for any j < i.

        Algorithm 3 of the paper evaluates every candidate j from one forward pass; the
        encoder and decoder call it once per step."""
        x0_hat = self.x0_prediction(x_i, i)

        def at(j: int) -> Gaussian:
            post = ddpm.posterior(self.alphas_cumprod, i, j)
            mu = (post.A * x0_hat + post.B * x_i).astype(np.float32)
            return mu, float(np.sqrt(post.var))

        return at

    def reverse(self, x_i: np.ndarray, i: int, j: int) -> Gaussian:
        return self.reverse_predictor(x_i, i)(j)

    def check_size(self, height: int, width: int) -> None:
        """Refuse, with a clear message, sizes far outside what the model handles."""
        lo, hi = self.min_side, self.max_side
        if min(height, width) < lo or max(height, width) > hi:
            raise InputError(
                f"{self.name}: image {width}x{height} is outside the sizes this model codes "
                f"({lo}..{hi} pixels per side); resize or crop it first")


def sha256_files(paths: list[Path], extra: bytes = b"") -> bytes:
    """sha256 over files (name and contents, in sorted order) and ``extra``."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.as_posix()):
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(extra)
    return h.digest()
