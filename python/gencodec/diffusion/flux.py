"""Flux (optimal-transport / rectified flow) as a DDPM, by the SNR-matching transform of
the paper's appendix A.3.

Flux's path is x_s = (1 - s) x_0 + s eps with a velocity model v(x_s, s) ~ eps - x_0;
DDPM's is x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. Equal signal-to-noise ratios
(1 - s)^2 / s^2 = abar_t / (1 - abar_t) give

    s(t) = sqrt(1 - abar_t) / (sqrt(abar_t) + sqrt(1 - abar_t))          (A.3 step 1)
    x_s  = x_t / c_t,   c_t = sqrt(abar_t) + sqrt(1 - abar_t)             (A.3 step 2)

since c_t (1 - s) = sqrt(abar_t). With the velocity at (x_s, s), the DDPM noise
prediction is eps = x_s + (1 - s) v (from x_s = (1 - s) x_0 + s eps and v = eps - x_0),
so DiffC runs on Flux unchanged. Flux's VAE latents are (z - shift_factor) *
scaling_factor. The DDPM schedule used for the coding is SD's scaled-linear one.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from gencodec.diffusion import ddpm
from gencodec.diffusion.base import Backbone, sha256_files
from gencodec.diffusion.sd import (CONDITIONING_FILE, VaeLatents, component_files,
                                  load_conditioning, resolve_folder, torch_dtype)


def flow_sigma(abar_t: float) -> float:
    """The flow time s with the SNR of DDPM's abar_t (A.3 step 1)."""
    a, s = np.sqrt(abar_t), np.sqrt(1.0 - abar_t)
    return float(s / (a + s))


def ddpm_to_flow_scale(abar_t: float) -> float:
    """c_t with x_flow = x_ddpm / c_t (A.3 step 2)."""
    return float(np.sqrt(abar_t) + np.sqrt(1.0 - abar_t))


def eps_from_velocity(x_flow, sigma: float, v):
    return x_flow + (1.0 - sigma) * v


class FlowBackbone(Backbone):
    """A velocity model seen as a DDPM: subclasses give :meth:`velocity`."""

    @abc.abstractmethod
    def velocity(self, x_flow: np.ndarray, sigma: float) -> np.ndarray:
        """v(x_s, s) ~ eps - x_0 at flow time s in [0, 1]."""

    def eps(self, x_t: np.ndarray, t: int) -> np.ndarray:
        abar = float(self.alphas_cumprod[t])
        sigma = flow_sigma(abar)
        x_flow = (x_t / ddpm_to_flow_scale(abar)).astype(np.float32)
        return eps_from_velocity(x_flow, sigma, self.velocity(x_flow, sigma)).astype(np.float32)


def pack_latents(z, patch: int = 2):
    """(C, H, W) -> (1, H/2 * W/2, 4C): Flux's 2x2 patch tokens."""
    c, h, w = z.shape
    z = z.reshape(1, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(1, (h // patch) * (w // patch), c * patch * patch)


def unpack_latents(tokens, c: int, h: int, w: int, patch: int = 2):
    z = tokens.reshape(1, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(c, h, w)


class Flux(VaeLatents, FlowBackbone):
    """diffusers FluxTransformer2DModel + AutoencoderKL from a Flux pipeline folder or hub
    id (``transformer/``, ``vae/``). Conditioning: ``gencodec_conditioning.safetensors``
    (``prompt_embeds`` (1, L, 4096) T5 and ``pooled_prompt_embeds`` (1, 768) CLIP) or
    zeros with L = 512; guidance ``guidance`` (3.5, Flux-dev's default) when the model
    embeds it."""

    def __init__(self, folder: Path, device: str = "cpu", name: str = "",
                 guidance: float = 3.5, beta_schedule: str = "scaled_linear"):
        from diffusers import FluxTransformer2DModel

        self.name, self.device, self.guidance = name or str(folder), device, float(guidance)
        self.folder = folder
        self.dtype = torch_dtype(device)
        self.transformer = FluxTransformer2DModel.from_pretrained(
            folder, subfolder="transformer", torch_dtype=self.dtype).to(device).eval()
        self._load_vae(folder, device, self.dtype)
        self.pad_multiple = self.vae_factor * 2
        self.min_side, self.max_side = self.pad_multiple, 2048
        self.alphas_cumprod = ddpm.make_alphas_cumprod(beta_schedule)
        cfg = self.transformer.config
        f = folder / CONDITIONING_FILE
        prompt, pooled = load_conditioning(folder, cfg.joint_attention_dim,
                                           cfg.pooled_projection_dim, length=512)
        self.prompt, self.pooled = prompt.to(device, self.dtype), pooled.to(device, self.dtype)
        files = [p for s in ("transformer", "vae") for p in component_files(folder, s)]
        self._sha = sha256_files(files + ([f] if f.is_file() else []),
                                 extra=f"guidance={guidance};{beta_schedule}".encode())

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", name: str | None = None,
                        **options) -> "Flux":
        return cls(resolve_folder(path, ("transformer", "vae")), device=device,
                   name=name or str(path), **options)

    def weights_sha256(self) -> bytes:
        return self._sha

    def velocity(self, x_flow: np.ndarray, sigma: float) -> np.ndarray:
        import torch

        c, h, w = x_flow.shape
        z = torch.from_numpy(np.ascontiguousarray(x_flow)).to(self.device, self.dtype)
        ids = torch.zeros(h // 2, w // 2, 3)
        ids[..., 1] = torch.arange(h // 2)[:, None]
        ids[..., 2] = torch.arange(w // 2)[None, :]
        kwargs = {}
        if self.transformer.config.guidance_embeds:
            kwargs["guidance"] = torch.tensor([self.guidance], device=self.device)
        with torch.inference_mode():
            v = self.transformer(
                hidden_states=pack_latents(z), timestep=torch.tensor([sigma], device=self.device),
                pooled_projections=self.pooled, encoder_hidden_states=self.prompt,
                txt_ids=torch.zeros(self.prompt.shape[1], 3, device=self.device),
                img_ids=ids.reshape(-1, 3).to(self.device), return_dict=False, **kwargs)[0]
        return unpack_latents(v, c, h, w).float().cpu().numpy()
