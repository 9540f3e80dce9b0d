"""Our OSDiff modules compute what the upstream model definitions compute
(cheesejiang/OSDiff: ``LFGCM``, ``CDDM`` and the ldm ``UNetModel``), on the same weights.

``upstream_golden.safetensors`` was written once, at development time, by running the
upstream code in a scratch environment (never part of this repository) at the small
sizes of ``LFGCM_SIZES`` / ``UNET_SIZES``, every parameter set by :func:`upstream_weight`
(a function of the tensor's name and shape only, so this test rebuilds the same upstream
state dict without the upstream code). The file holds the upstream keys and shapes, the
non-parameter buffers, the inputs and the upstream outputs: y_c and the likelihoods of
the latent codec (eval mode) and the control branch + UNet noise prediction at t = 999.
Our modules load the converted state dicts strictly (``keymap``) and must reproduce them.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).with_name("upstream_golden.safetensors")

#: the upstream LFGCM's constructor arguments of the fixture
LFGCM_SIZES = dict(in_nc=4, out_nc=4, enc_mid=[16], N=32, M=48, prior_nc=8, sft_ks=3,
                   slice_num=4, slice_ch=[4, 4, 8, 32])
#: the upstream UNetModel's (and CDDM's) constructor arguments of the fixture
UNET_SIZES = dict(image_size=32, in_channels=4, out_channels=4, num_res_blocks=1,
                  attention_resolutions=[1], channel_mult=[1, 2],
                  use_spatial_transformer=True, use_linear_in_transformer=True,
                  transformer_depth=1, context_dim=16, legacy=False, model_channels=64)
UNET_HEAD_CHANNELS, CONTROL_HEAD_CHANNELS, CONTROL_RATIO = 16, 8, 0.5
LATENT_SHAPE = (1, 4, 32, 48)
CONTEXT_SHAPE = (1, 77, 16)


def upstream_weight(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The fixture's value of parameter ``name``: normal / sqrt(fan-in) for weights of
    two or more axes, 1 + 0.1 normal for 1-D ``*.weight`` (norm scales), 0.1 normal for
    the rest, from a generator seeded by the name (zero-initialised convolutions get
    values too, so every path acts)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    z = rng.standard_normal(shape)
    if len(shape) >= 2:
        z = z / math.sqrt(max(1, int(np.prod(shape[1:]))))
    elif name.endswith(".weight"):
        z = 1.0 + 0.1 * z
    else:
        z = 0.1 * z
    return torch.from_numpy(z.astype(np.float32))


def inputs() -> dict[str, torch.Tensor]:
    """y0 (the VAE latent), the noisy latent y_t and the text context of the fixture."""
    rng = np.random.default_rng(2026)
    return {name: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
            for name, shape in (("y0", LATENT_SHAPE), ("y_t", LATENT_SHAPE),
                                ("ctx", CONTEXT_SHAPE))}


def upstream_state(keys: dict, fixture: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The upstream state dict of one module: parameters by :func:`upstream_weight`,
    buffers as the fixture recorded them."""
    out = {}
    for name, shape in keys[prefix].items():
        buffer = fixture.get(f"buffer.{prefix}.{name}")
        out[name] = buffer if buffer is not None else upstream_weight(name, tuple(shape))
    return out


@pytest.fixture(scope="module")
def golden():
    from safetensors import safe_open

    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        keys = json.loads(f.metadata()["keys"])
    return keys, tensors


def _ours(keys, fixture):
    from gencodec.osdiff.keymap import convert_upstream_state_dict

    up = {"preprocess_model." + k: v for k, v in upstream_state(keys, fixture, "lfgcm").items()}
    up.update({"control_model." + k: v
               for k, v in upstream_state(keys, fixture, "cddm").items()})
    return convert_upstream_state_dict(up)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_latent_codec_reproduces_upstream_lfgcm(golden):
    from gencodec.osdiff.latent_codec import LatentCodec

    keys, fixture = golden
    s = LFGCM_SIZES
    codec = LatentCodec(s["in_nc"], s["enc_mid"][0], s["N"], s["M"], tuple(s["slice_ch"])).eval()
    codec.load_state_dict(_strip(_ours(keys, fixture), "latent_codec."), strict=True)
    with torch.no_grad():
        y_c, _, likelihoods = codec(inputs()["y0"], training=False)
    torch.testing.assert_close(y_c, fixture["y_c"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(likelihoods["y"], fixture["y_lik"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(likelihoods["z"], fixture["z_lik"], rtol=1e-4, atol=1e-6)


def test_control_branch_and_unet_reproduce_upstream_cddm(golden):
    import diffusers
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from gencodec.osdiff.control import ControlBranch

    keys, fixture = golden
    unet = diffusers.UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), attention_head_dim=(4, 8),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        use_linear_projection=True, norm_num_groups=32).eval()
    ldm = {"model.diffusion_model." + k: v
           for k, v in upstream_state(keys, fixture, "unet").items()}
    unet.load_state_dict(convert_ldm_unet_checkpoint(ldm, dict(unet.config)), strict=True)
    control = ControlBranch(unet, 4, ratio=CONTROL_RATIO,
                            head_channels=CONTROL_HEAD_CHANNELS).eval()
    control.load_state_dict(_strip(_ours(keys, fixture), "control."), strict=True)
    x = inputs()
    with torch.no_grad():
        eps = control(unet, x["y_t"], torch.tensor([999]), fixture["y_c"], x["ctx"])
    scale = float(fixture["eps"].abs().max())
    assert scale > 0.1  # the fixture's paths all act
    torch.testing.assert_close(eps, fixture["eps"], rtol=1e-4, atol=1e-5 * scale)
