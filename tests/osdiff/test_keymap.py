"""The public OSDiff checkpoints' keys (the fixture lists every key and shape of its
LFGCM and CDDM state dicts at the public config, extracted from the upstream model
definitions) map one to one onto ours, with the same shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gencodec.osdiff import keymap

FIXTURE = Path(__file__).with_name("upstream_keys.json")


@pytest.fixture(scope="module")
def upstream() -> dict:
    return json.loads(FIXTURE.read_text())["keys"]


@pytest.fixture(scope="module")
def ours() -> dict:
    """Our trainable keys and shapes at the public sizes on an SD 2.1 backbone (meta
    tensors: shapes only, nothing allocated)."""
    import diffusers

    from gencodec.diffusion.sd import SD21_UNET_CONFIG, SD_VAE_CONFIG
    from gencodec.osdiff.model import OSDiff, OSDiffConfig

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**SD21_UNET_CONFIG)
        vae = diffusers.AutoencoderKL(**SD_VAE_CONFIG)
        model = OSDiff(OSDiffConfig(), vae, unet, np.linspace(0.999, 0.005, 1000))
    return {k: tuple(v.shape) for k, v in model.trainable_state_dict().items()}


def test_every_public_key_is_placed_or_dropped_on_purpose(upstream, ours):
    placed = {}
    for key, shape in upstream.items():
        mine = keymap.upstream_to_ours(key)
        if mine is None:
            continue
        assert mine in ours, f"{key} -> {mine}: not a key of ours"
        assert mine not in placed, f"{key} and {placed.get(mine)} both map to {mine}"
        placed[mine] = key
        if not key.endswith(("_offset", "_quantized_cdf", "_cdf_length")):  # sized by update()
            assert tuple(shape) == ours[mine], f"{key} {shape} -> {mine} {ours[mine]}"
    # everything of ours comes from the checkpoint, except the scale table the public
    # inference also replaces on load
    assert set(ours) - set(placed) == {"latent_codec.gaussian_conditional.scale_table"}
    dropped = [k for k in upstream if keymap.upstream_to_ours(k) is None]
    assert all(".sft_feature" in k or ".h_a1." in k or ".h_a4." in k or ".h_a7." in k
               or ".h_a8." in k or ".f_c." in k or k.endswith(".bound")
               or k.startswith("preprocess_model.gaussian_conditional.") for k in dropped)


def test_convert_loads_strictly(upstream, ours):
    """A state dict with the public keys converts to exactly our keys."""
    fake = {k: torch.zeros(v) for k, v in upstream.items() if not k.endswith(".bound")}
    fake.update({k: torch.tensor([1e-9]) for k in upstream if "likelihood_lower_bound" in k})
    fake["preprocess_model.gaussian_conditional.lower_bound_scale.bound"] = torch.tensor([0.11])
    fake["guidance_model.DMLP.0.weight"] = torch.zeros(1)  # other prefixes are ignored
    converted = keymap.convert_upstream_state_dict(fake)
    assert set(converted) == set(ours)
    fake["preprocess_model.gaussian_conditional.lower_bound_scale.bound"] = torch.tensor([0.5])
    with pytest.raises(ValueError, match="0.11"):
        keymap.convert_upstream_state_dict(fake)
    fake["preprocess_model.gaussian_conditional.lower_bound_scale.bound"] = torch.tensor([0.11])
    # within float32's rounding of 1e-9, but not 0 (an absolute tolerance would pass it)
    bound = "preprocess_model.entropy_bottleneck.likelihood_lower_bound.bound"
    fake[bound] = torch.tensor([1e-9], dtype=torch.float32)
    keymap.convert_upstream_state_dict(fake)
    fake[bound] = torch.tensor([0.0])
    with pytest.raises(ValueError, match="1e-09"):
        keymap.convert_upstream_state_dict(fake)


def test_zero_conditioning_is_flagged(osdiff_model):
    """A backbone folder without gencodec_conditioning.safetensors conditions on zeros:
    not the published decoder (it uses the empty prompt's embedding)."""
    assert not osdiff_model.prompt_embeds.any()
    with pytest.warns(UserWarning, match="empty-prompt embedding"):
        assert keymap.warn_if_unconditioned(osdiff_model)
    saved = osdiff_model.prompt_embeds.clone()
    try:
        osdiff_model.prompt_embeds.normal_()
        assert not keymap.warn_if_unconditioned(osdiff_model)
    finally:
        osdiff_model.prompt_embeds.copy_(saved)


def test_unknown_keys_are_refused():
    for key in ("preprocess_model.encoder.g_a7.weight", "control_model.input_blocks.1.0.x.w",
                "control_model.something"):
        with pytest.raises(KeyError):
            keymap.upstream_to_ours(key)
