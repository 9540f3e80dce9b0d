"""Loading the public OSDiff checkpoints (cheesejiang/OSDiff, ``lambda_*.ckpt``).

A public checkpoint is a PyTorch Lightning state dict of the whole training module.
Two of its parts are the trained weights of OSDiff:

* ``preprocess_model.*``: the latent codec ``LFGCM`` -> our ``latent_codec.*``
* ``control_model.*``: the control branch ``CDDM`` -> our ``control.*``

The frozen SD 2.1 UNet and VAE (``model.diffusion_model.*``, ``first_stage_model.*``)
come from a diffusers folder instead, and the discriminator and metric weights
(``guidance_model.*``, LPIPS) are training state; keys under other prefixes are left
alone. The map, key by key (``{i}``: an index carried over):

=================================================  ===========================================
public (``preprocess_model.``)                     ours (``latent_codec.``)
=================================================  ===========================================
``encoder.g_a1.{i}`` (i = 0..3) / ``encoder.g_a6`` ``g_a.{i}`` / ``g_a.4``
``hyper_enc.h_a0`` / ``h_a3`` / ``h_a6`` / ``h_a9`` ``h_a.0`` / ``h_a.2`` / ``h_a.4`` / ``h_a.5``
``hyper_dec.hyper_dec.{i}``                         ``h_s.{i}``
``decoder.g_s2.{i}`` / ``g_s3.{i}`` / ``g_s4``      ``g_s.{i}`` / ``g_s.{4 + i}`` / ``g_s.8``
``channel_context.{i}`` (i >= 1)                    ``channel_context.{i - 1}``
``local_context``, ``entropy_parameters_*``,        the same names
``entropy_bottleneck.*`` (parameters and tables),
``gaussian_conditional.scale_bound``
=================================================  ===========================================

Dropped, because the public model's forward and coding never use them: the SFT
modulation layers of its hyper encoder (``hyper_enc.sft_feature*``, ``hyper_enc.h_a1``,
``h_a4``, ``h_a7``, ``h_a8``) and ``f_c``; CompressAI's constants
(``*.likelihood_lower_bound.bound``, ``gaussian_conditional.lower_bound_scale.bound``,
checked equal to ours) and its rANS tables of the Gaussian
(``gaussian_conditional._offset/_quantized_cdf/_cdf_length``; constriction's
``QuantizedGaussian`` codes at the table's scales directly). The public inference
replaces ``gaussian_conditional.scale_table`` (empty in a checkpoint saved before
``update()``) by its ``get_scale_table()`` on load; so does the conversion here, with
the same 64 levels from 0.11 to 256 (:func:`gencodec.osdiff.entropy.scale_table`).

The control branch (``control_model.``, LDM layout -> diffusers blocks in ``control.``):
``control_model.time_embed.0/.2`` -> ``time_embedding.linear_1/linear_2``;
``control_model.input_blocks.0.0`` -> ``conv_in``; ``control_model.input_blocks.{k}.0``
-> ``stages.{k - 1}.resnet`` (``.op`` -> ``stages.{k - 1}.downsample``),
``input_blocks.{k}.1`` -> ``stages.{k - 1}.attention``; ``control_model.middle_block.0/1/2``
-> ``mid_block.resnets.0 / attentions.0 / resnets.1``; ``enc_zero_convs_out.{i}.0`` ->
``enc_zero_convs.{i}``, ``middle_block_out.0`` -> ``mid_zero_conv``,
``dec_zero_convs_out.{i}.0`` -> ``dec_zero_convs.{i}``, ``scale_list`` as is. Inside a
resnet: ``in_layers.0/2`` -> ``norm1/conv1``, ``emb_layers.1`` -> ``time_emb_proj``,
``out_layers.0/3`` -> ``norm2/conv2``, ``skip_connection`` -> ``conv_shortcut``;
transformer names are the same in LDM and diffusers.
"""

from __future__ import annotations

import re

import torch

from gencodec.osdiff.entropy import LIKELIHOOD_BOUND, SCALE_BOUND, scale_table

CODEC_PREFIX, CONTROL_PREFIX = "preprocess_model.", "control_model."

_CODEC_RULES = [
    (r"encoder\.g_a1\.(\d+)\.", lambda m: f"g_a.{m[1]}."),
    (r"encoder\.g_a6\.", lambda m: "g_a.4."),
    (r"hyper_enc\.h_a0\.", lambda m: "h_a.0."),
    (r"hyper_enc\.h_a3\.", lambda m: "h_a.2."),
    (r"hyper_enc\.h_a6\.", lambda m: "h_a.4."),
    (r"hyper_enc\.h_a9\.", lambda m: "h_a.5."),
    (r"hyper_dec\.hyper_dec\.(\d+)\.", lambda m: f"h_s.{m[1]}."),
    (r"decoder\.g_s2\.(\d+)\.", lambda m: f"g_s.{m[1]}."),
    (r"decoder\.g_s3\.(\d+)\.", lambda m: f"g_s.{4 + int(m[1])}."),
    (r"decoder\.g_s4\.", lambda m: "g_s.8."),
    (r"channel_context\.(\d+)\.", lambda m: f"channel_context.{int(m[1]) - 1}."),
    (r"(local_context|entropy_parameters_anchor|entropy_parameters_nonanchor)\.",
     lambda m: m[0]),
    (r"entropy_bottleneck\.(_matrix\d+|_bias\d+|_factor\d+|quantiles|target|_offset"
     r"|_quantized_cdf|_cdf_length)$", lambda m: m[0]),
    (r"gaussian_conditional\.scale_bound$", lambda m: m[0]),
]
_CODEC_DROPPED = re.compile(
    r"hyper_enc\.(sft_feature\w*|h_a1|h_a4|h_a7|h_a8)\.|f_c\.|"
    r"gaussian_conditional\.(_offset|_quantized_cdf|_cdf_length|scale_table)$|"
    r"(entropy_bottleneck|gaussian_conditional)\.likelihood_lower_bound\.bound$|"
    r"gaussian_conditional\.lower_bound_scale\.bound$")
_CONSTANTS = {"entropy_bottleneck.likelihood_lower_bound.bound": LIKELIHOOD_BOUND,
              "gaussian_conditional.likelihood_lower_bound.bound": LIKELIHOOD_BOUND,
              "gaussian_conditional.lower_bound_scale.bound": SCALE_BOUND}

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_RESNET_RE = re.compile(r"(in_layers\.[02]|emb_layers\.1|out_layers\.[03]|skip_connection)\.")


def _resnet(rest: str) -> str:
    m = _RESNET_RE.match(rest)
    if not m:
        raise KeyError(rest)
    return _RESNET[m[1]] + "." + rest[m.end():]


def _control_key(key: str) -> str:
    if key == "scale_list":
        return key
    m = re.match(r"control_model\.time_embed\.([02])\.(.*)", key)
    if m:
        return f"time_embedding.linear_{1 if m[1] == '0' else 2}.{m[2]}"
    m = re.match(r"control_model\.input_blocks\.(\d+)\.(\d+)\.(.*)", key)
    if m:
        k, part, rest = int(m[1]), m[2], m[3]
        if k == 0:
            return f"conv_in.{rest}"
        if part == "1":
            return f"stages.{k - 1}.attention.{rest}"
        if rest.startswith("op."):
            return f"stages.{k - 1}.downsample.{rest[3:]}"
        return f"stages.{k - 1}.resnet.{_resnet(rest)}"
    m = re.match(r"control_model\.middle_block\.([012])\.(.*)", key)
    if m:
        if m[1] == "1":
            return f"mid_block.attentions.0.{m[2]}"
        return f"mid_block.resnets.{0 if m[1] == '0' else 1}.{_resnet(m[2])}"
    m = re.match(r"(enc|dec)_zero_convs_out\.(\d+)\.0\.(.*)", key)
    if m:
        return f"{m[1]}_zero_convs.{m[2]}.{m[3]}"
    m = re.match(r"middle_block_out\.0\.(.*)", key)
    if m:
        return f"mid_zero_conv.{m[1]}"
    raise KeyError(key)


def upstream_to_ours(key: str) -> str | None:
    """Our state-dict key for a public one; None for the keys dropped on purpose.
    Raises KeyError for keys of the two parts that the map does not know."""
    if key.startswith(CODEC_PREFIX):
        rest = key[len(CODEC_PREFIX):]
        if _CODEC_DROPPED.match(rest):
            return None
        for pattern, repl in _CODEC_RULES:
            m = re.match(pattern, rest)
            if m:
                return "latent_codec." + repl(m) + rest[m.end():]
        raise KeyError(key)
    if key.startswith(CONTROL_PREFIX):
        try:
            return "control." + _control_key(key[len(CONTROL_PREFIX):])
        except KeyError:
            raise KeyError(key) from None
    raise KeyError(key)


def convert_upstream_state_dict(state: dict) -> dict:
    """Our trainable state dict from a public checkpoint's (its ``state_dict``): the two
    parts renamed, the dropped keys checked (constants) and left out, other prefixes
    ignored."""
    out = {}
    for key, value in state.items():
        if not key.startswith((CODEC_PREFIX, CONTROL_PREFIX)):
            continue
        ours = upstream_to_ours(key)
        rest = key[len(CODEC_PREFIX):]
        # atol 0: the default 1e-8 would let a bound of 0 pass for 1e-9
        if rest in _CONSTANTS and not torch.allclose(value.double().flatten()[:1],
                                                     torch.tensor([_CONSTANTS[rest]],
                                                                  dtype=torch.float64),
                                                     rtol=1e-6, atol=0.0):
            raise ValueError(f"{key} is {value.flatten()[:1].item()}, this model uses "
                             f"{_CONSTANTS[rest]}")
        if ours is not None:
            out[ours] = value
    if any(k.startswith(CODEC_PREFIX) for k in state):
        out["latent_codec.gaussian_conditional.scale_table"] = scale_table()
    return out


def load_upstream_checkpoint(model, path: str) -> None:
    """Load a public ``lambda_*.ckpt`` into an :class:`~gencodec.osdiff.model.OSDiff`
    (its config must have the public sizes: :class:`OSDiffConfig` defaults), strictly:
    every trained weight of ours is set and every public one is placed or dropped on
    purpose. The entropy tables are rebuilt afterwards, as the public inference does.

    The published decoder conditions its UNet and control branch on the SD 2.1 text
    encoder's embedding of the empty prompt (``""``), not on zeros: the backbone folder
    must hold it as ``gencodec_conditioning.safetensors`` (``prompt_embeds``, 1 x 77 x
    1024; :func:`gencodec.diffusion.sd.load_conditioning`). A folder without it
    conditions on zeros, which is not the published decoder (the images differ); a
    warning says so (:func:`warn_if_unconditioned`)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_trainable_state_dict(convert_upstream_state_dict(ckpt.get("state_dict", ckpt)))
    model.update_entropy_tables()
    warn_if_unconditioned(model)


def warn_if_unconditioned(model) -> bool:
    """Warn (and return True) when ``model`` conditions on an all-zero text embedding,
    i.e. its backbone folder has no ``gencodec_conditioning.safetensors``: the public
    weights then do not give the published decoder (see
    :func:`load_upstream_checkpoint`)."""
    import warnings

    if bool(model.prompt_embeds.any()):
        return False
    warnings.warn("osdiff: the backbone has no gencodec_conditioning.safetensors, so the UNet "
                  "is conditioned on zeros; the published OSDiff decoder conditions on the "
                  "text encoder's empty-prompt embedding (save it there as prompt_embeds)",
                  UserWarning, stacklevel=2)
    return True

