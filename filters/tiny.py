"""Randomly initialised models built from configs, for tests and benchmarks only.

They exercise every code path (save/load, tiling, back ends, exports) without
network access. Their outputs mean nothing: never use them to process real media.

* :func:`tiny_compact` -- the compact architecture, few channels;
* :func:`tiny_onestep` -- a diffusers UNet2DConditionModel + AutoencoderKL pair with
  the SD layout (cross-attention blocks, static embedding), a few hundred kB;
* :func:`tiny_sd_folder` -- a tiny random SD model folder (``unet/``, ``vae/``,
  ``scheduler/``, ``model_index.json``), as diffusion backbones are loaded from;
* :func:`onestep_from_sizes` with :data:`SD_LIKE_SMALL` (a CPU-sized SD look-alike)
  or :data:`SD21_SIZE` (the real SD 2.1 UNet and VAE shapes, ~950 M parameters, for
  GPU timing).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gencodec.diffusion.sd import SD21_UNET_CONFIG, SD_VAE_CONFIG
from gencodec.filters.compact import CompactFilterNet
from gencodec.filters.onestep import OneStepDiffusion, alphas_cumprod

#: Smallest useful SD look-alike: 3 VAE levels (x4), 2 UNet levels with
#: cross-attention at the lower one, as in SD (multiple 8).
TINY = {
    "unet": dict(block_out_channels=(16, 32), layers_per_block=1,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                 cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8),
    "vae": dict(block_out_channels=(8, 16, 16), layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=8,
                mid_block_add_attention=False),
    "tokens": 4,
}

#: A CPU-benchmark SD look-alike: SD's 4-level UNet and VAE at 1/10 to 1/4 the width.
SD_LIKE_SMALL = {
    "unet": dict(block_out_channels=(32, 64, 128, 128), layers_per_block=1,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16,
                 use_linear_projection=True),
    "vae": dict(block_out_channels=(32, 64, 128, 128), layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=16),
    "tokens": 8,
}

#: Stable Diffusion 2.1's UNet and VAE shapes (random weights: timing only), those of
#: the 768-pixel model.
SD21_SIZE = {
    "unet": dict(SD21_UNET_CONFIG, sample_size=96),
    "vae": dict(SD_VAE_CONFIG, sample_size=768),
    "tokens": 77,
}


def tiny_compact(seed: int = 0, channels: int = 8, blocks: int = 2) -> CompactFilterNet:
    """A compact network with random weights large enough to change the image."""
    torch.manual_seed(seed)
    model = CompactFilterNet(channels=channels, blocks=blocks, scale=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08)
    return model.eval()


def onestep_from_sizes(sizes: dict, seed: int = 0,
                       prediction_type: str = "epsilon") -> OneStepDiffusion:
    """A one-step model with random weights from a size table (:data:`TINY`, ...)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{"in_channels": 4, "out_channels": 4, **sizes["unet"]})
    vae = AutoencoderKL(**{"in_channels": 3, "out_channels": 3, "latent_channels": 4,
                           **sizes["vae"]})
    emb = torch.randn(1, sizes["tokens"], sizes["unet"]["cross_attention_dim"])
    t = 999
    alpha = float(alphas_cumprod({"beta_schedule": "scaled_linear"})[t])
    return OneStepDiffusion(unet, vae, emb, timestep=t, prediction_type=prediction_type,
                            alpha_cumprod=alpha, prompt="(random test embedding)").eval()


def tiny_onestep(seed: int = 0, prediction_type: str = "sample") -> OneStepDiffusion:
    """The smallest SD-layout one-step model (x0-predicting, so the random UNet's
    output stays in the VAE's latent range)."""
    return onestep_from_sizes(TINY, seed, prediction_type)


def tiny_sd_folder(folder: Path, seed: int = 0, prediction_type: str = "epsilon",
                   linear_projection: bool = False) -> Path:
    """A tiny random SD folder (diffusers layout: ``unet/``, ``vae/``, ``scheduler/``,
    ``model_index.json``): two UNet levels with cross-attention in the first, as SD;
    ``linear_projection``: SD 2.1's linear attention projections."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        attention_head_dim=2, norm_num_groups=4, use_linear_projection=linear_projection)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
        latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32)
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                    beta_end=0.012, prediction_type=prediction_type)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    sched.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name":
                                                          "StableDiffusionPipeline"}))
    return folder
