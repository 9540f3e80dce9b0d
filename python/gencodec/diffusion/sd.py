"""diffusers Stable Diffusion backbones: SD 1.5 (eps), SD 2.1 (v-prediction, converted
to eps) and SDXL (optionally with its refiner for t <= 200, as the paper does).

The folder (or hub id) is a diffusers pipeline layout: ``unet/``, ``vae/`` and
``scheduler/``. There is no text encoder here (transformers is not a dependency), so
the conditioning is a fixed tensor: ``gencodec_conditioning.safetensors`` in the folder
(``prompt_embeds`` (1, L, D) and, for SDXL, ``pooled_prompt_embeds`` (1, P)), e.g. the
encoded empty prompt saved once with diffusers' ``pipe.encode_prompt("")``; without it,
zeros of shape (1, 77, cross_attention_dim) and (1, 1280). The paper finds prompts not
worth their bits, so an unconditional embedding is the intended use; zeros are close to,
but not the same as, the encoded empty prompt of SD 2.1 and SDXL.

Weights run in float16 on CUDA and float32 on the CPU (the VAE in float32 whenever its
config asks for ``force_upcast``). The fingerprint hashes the files of unet/, vae/,
scheduler/ and the conditioning, so it does not depend on the device or dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gencodec.diffusion import ddpm
from gencodec.diffusion.base import Backbone, sha256_files

SUBFOLDERS = ("unet", "vae", "scheduler")
CONDITIONING_FILE = "gencodec_conditioning.safetensors"
REFINER_T = 200
WEIGHTS_NAME = "diffusion_pytorch_model"
CONFIG_NAMES = ("config.json", "scheduler_config.json")

#: The diffusers configs of SD 2.1's UNet (``v2-1_512-ema-pruned``, the backbone of
#: OSDiff's public weights; the 768-pixel v-prediction model differs only in
#: ``sample_size=96``) and of the SD VAE, for building these backbones without the hub.
SD21_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32)
SD_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
    scaling_factor=0.18215)


def component_files(folder: Path, subfolder: str) -> list[Path]:
    """The files diffusers' ``from_pretrained(folder, subfolder=...)`` reads (no
    variant): the config and the weights, whole or sharded, safetensors before .bin.
    Hub repos and clones also hold fp16 and non-EMA variants, .bin copies, ONNX files;
    they change nothing, so they stay out of the fingerprint (a hub snapshot and a
    ``save_pretrained`` copy of one model then have the same fingerprint) and out of
    the download."""
    d = folder / subfolder
    files = [d / n for n in CONFIG_NAMES if (d / n).is_file()]
    for ext in ("safetensors", "bin"):
        single, index = d / f"{WEIGHTS_NAME}.{ext}", d / f"{WEIGHTS_NAME}.{ext}.index.json"
        if single.is_file():
            return files + [single]
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return files + [index] + [d / n for n in shards]
    return files


def resolve_folder(path: str | Path, subfolders=SUBFOLDERS) -> Path:
    """A local folder for ``path``: itself, or the hub snapshot of the files that
    :func:`component_files` names (``HF_HUB_OFFLINE`` makes this use the local cache
    only)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", CONDITIONING_FILE, "diffc_profile.json"]
    for s in subfolders:
        patterns += [f"{s}/{n}" for n in CONFIG_NAMES] + [
            f"{s}/{WEIGHTS_NAME}.safetensors", f"{s}/{WEIGHTS_NAME}.safetensors.index.json",
            f"{s}/{WEIGHTS_NAME}-*-of-*.safetensors"]
    return Path(snapshot_download(str(path), allow_patterns=patterns))


def torch_dtype(device: str):
    import torch

    return torch.float16 if str(device).startswith("cuda") else torch.float32


def load_conditioning(folder: Path, cross_dim: int, pooled_dim: int = 1280, length: int = 77):
    """(prompt_embeds, pooled_prompt_embeds) from the folder, or zeros of shapes
    (1, length, cross_dim) and (1, pooled_dim)."""
    import torch

    f = folder / CONDITIONING_FILE
    if f.is_file():
        from safetensors.torch import load_file

        t = load_file(str(f))
        return t["prompt_embeds"], t.get("pooled_prompt_embeds", torch.zeros(1, pooled_dim))
    return torch.zeros(1, length, cross_dim), torch.zeros(1, pooled_dim)


class _Unet:
    """A UNet with its conditioning, called as eps/v = f(x_t, t)."""

    def __init__(self, folder: Path, device: str, dtype):
        from diffusers import UNet2DConditionModel

        self.model = UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", torch_dtype=dtype).to(device).eval()
        self.device, self.dtype = device, dtype
        cfg = self.model.config
        prompt, pooled = load_conditioning(folder, cfg.cross_attention_dim)
        self.prompt = prompt.to(device, dtype)
        self.added = None
        if cfg.addition_embed_type == "text_time":  # SDXL: pooled text and size ids
            n_ids = (cfg.projection_class_embeddings_input_dim - pooled.shape[-1]) \
                // cfg.addition_time_embed_dim
            self.pooled, self.n_ids = pooled.to(device, dtype), n_ids
        self.files = component_files(folder, "unet")
        if (folder / CONDITIONING_FILE).is_file():  # it changes the outputs too
            self.files.append(folder / CONDITIONING_FILE)

    def __call__(self, x_t: np.ndarray, t: int) -> np.ndarray:
        import torch

        x = torch.from_numpy(x_t[None]).to(self.device, self.dtype)
        kwargs = {}
        if hasattr(self, "pooled"):
            h, w = x_t.shape[-2] * 8, x_t.shape[-1] * 8
            ids = [h, w, 0, 0, h, w] if self.n_ids == 6 else [h, w, 0, 0, 6.0]
            kwargs["added_cond_kwargs"] = {
                "text_embeds": self.pooled,
                "time_ids": torch.tensor([ids], device=self.device, dtype=self.dtype)}
        with torch.inference_mode():
            out = self.model(x, torch.tensor([t], device=self.device), self.prompt,
                             **kwargs).sample
        return out[0].float().cpu().numpy()


def latent_scaling(vae) -> tuple[float, float]:
    """(scale, shift) of a diffusers AutoencoderKL's latent space: the diffusion model's
    latent is x_0 = (z - shift) * scale for the VAE's z (``shift_factor``: Flux's VAE; 0
    for SD's)."""
    return float(vae.config.scaling_factor), float(vae.config.get("shift_factor") or 0.0)


def vae_latent(vae, x, dtype=None):
    """x_0 = (mean(E(x)) - shift) * scale of images ``x`` in [-1, 1] (the posterior mean,
    so encoding is deterministic), computed in ``dtype`` (default: that of the
    encoder's output)."""
    scale, shift = latent_scaling(vae)
    mean = vae.encode(x).latent_dist.mean
    return ((mean if dtype is None else mean.to(dtype)) - shift) * scale


def vae_image(vae, x0):
    """D(x_0 / scale + shift), the inverse of :func:`vae_latent`: the decoder's output
    (images in about [-1, 1]); x_0 is unscaled where it is, then moved to the VAE's
    device and dtype."""
    scale, shift = latent_scaling(vae)
    return vae.decode((x0 / scale + shift).to(vae.device, vae.dtype)).sample


class VaeLatents:
    """The latent space of a diffusers AutoencoderKL (:func:`vae_latent`, in float32),
    decoded back through D (:func:`vae_image`)."""

    def _load_vae(self, folder: Path, device: str, dtype) -> None:
        import torch
        from diffusers import AutoencoderKL

        config = AutoencoderKL.load_config(folder, subfolder="vae")
        self.vae_dtype = torch.float32 if config.get("force_upcast", False) else dtype
        self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae",
                                                 torch_dtype=self.vae_dtype).to(device).eval()
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        return (self.vae.config.latent_channels, height // self.vae_factor,
                width // self.vae_factor)

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        x = x.to(self.device, self.vae_dtype) / 127.5 - 1.0
        with torch.inference_mode():
            return vae_latent(self.vae, x, torch.float32)[0].cpu().numpy()

    def decode_latent(self, x0: np.ndarray) -> np.ndarray:
        import torch

        z = torch.from_numpy(np.asarray(x0, np.float32)[None])
        with torch.inference_mode():
            x = vae_image(self.vae, z)[0].float()
        return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class StableDiffusion(VaeLatents, Backbone):
    """SD 1.5 / 2.1 / XL through diffusers (see the module docstring)."""

    def __init__(self, folder: Path, device: str = "cpu", name: str = "",
                 refiner: str | Path | None = None):
        from diffusers import DDPMScheduler

        self.name, self.device, self.folder = name or str(folder), device, folder
        dtype = torch_dtype(device)
        self.unet = _Unet(folder, device, dtype)
        self._load_vae(folder, device, dtype)
        sched = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        self.alphas_cumprod = sched.alphas_cumprod.double().numpy()
        self.prediction_type = sched.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"{folder}: prediction type {self.prediction_type!r} unsupported")
        unet_factor = 2 ** (len(self.unet.model.config.block_out_channels) - 1)
        self.pad_multiple = self.vae_factor * unet_factor
        sample = self.unet.model.config.sample_size
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        self.min_side = self.pad_multiple
        self.max_side = max(2 * sample * self.vae_factor, 4 * self.pad_multiple)
        self.refiner = _Unet(resolve_folder(refiner), device, dtype) if refiner else None
        files = [p for s in SUBFOLDERS for p in component_files(folder, s)]
        files += [folder / CONDITIONING_FILE] if (folder / CONDITIONING_FILE).is_file() else []
        files += self.refiner.files if self.refiner else []
        self._sha = sha256_files(files)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", name: str | None = None,
                        refiner: str | Path | None = None) -> "StableDiffusion":
        return cls(resolve_folder(path), device=device, name=name or str(path), refiner=refiner)

    def weights_sha256(self) -> bytes:
        return self._sha

    def eps(self, x_t: np.ndarray, t: int) -> np.ndarray:
        net = self.refiner if self.refiner is not None and t <= REFINER_T else self.unet
        out = net(np.ascontiguousarray(x_t, np.float32), t)
        if self.prediction_type == "v_prediction":
            out = ddpm.eps_from_v(self.alphas_cumprod, t, x_t, out)
        return out.astype(np.float32)
