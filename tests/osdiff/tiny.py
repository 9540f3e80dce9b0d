"""Tiny random SD-layout backbones and OSDiff rate models for the OSDiff tests."""

from __future__ import annotations

from pathlib import Path

import torch


def make_backbone(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A tiny random SD folder (unet/, vae/, scheduler/) with SD 2.1's block types:
    cross-attention in every level but the last, linear projections."""
    from gencodec.filters.tiny import tiny_sd_folder

    return tiny_sd_folder(folder, seed, prediction_type, linear_projection=True)


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
