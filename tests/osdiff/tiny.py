"""Tiny random SD-layout backbones and OSDiff rate models for the OSDiff tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def make_backbone(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A tiny random SD folder (unet/, vae/, scheduler/) with SD 2.1's block types:
    cross-attention in every level but the last, linear projections."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        attention_head_dim=2, norm_num_groups=4, use_linear_projection=True)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
        latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32)
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                    beta_end=0.012, prediction_type=prediction_type)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    sched.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name":
                                                          "StableDiffusionPipeline"}))
    return folder


def randomize(model, seed: int) -> None:
    """Random weights in the trained parts (zero convolutions included, so the control
    branch acts), then fresh entropy tables."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.control.named_parameters():
            if "zero_conv" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    model.update_entropy_tables()


def make_osdiff_dir(folder: Path, seed: int = 0, qualities=(1, 2)) -> Path:
    """A backbone folder with rate models ``osdiff/q1``, ``osdiff/q2`` (different random
    weights, different seeds)."""
    from gencodec.osdiff.model import OSDiff, OSDiffConfig

    make_backbone(folder, seed)
    for q in qualities:
        torch.manual_seed(100 * seed + q)
        model = OSDiff.from_backbone(folder, OSDiffConfig.tiny(lambda_rate=1.0 / q))
        randomize(model, 100 * seed + q)
        model.save_rate_model(folder / "osdiff" / f"q{q}")
    return folder
