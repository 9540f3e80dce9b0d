"""One-step diffusion preprocessing (Guo et al., Fig. 1).

The paper's generator: image -> frozen VAE encoder -> one-step UNet at a fixed
timestep, conditioned on a *static* text embedding that replaces the text encoder ->
frozen VAE decoder. In formulas, with the VAE scaling factor ``s`` and
``a = alphas_cumprod[t]`` of the teacher's DDPM schedule (Eq. 1)::

    z   = s * (E(2x - 1).mean - shift)          # latent mean: no sampling, no noise
    out = UNet(z, t, c_static)
    z0  = (z - sqrt(1 - a) * out) / sqrt(a)     # prediction_type "epsilon"
        = sqrt(a) * z - sqrt(1 - a) * out       # "v_prediction"
        = out                                   # "sample" (x0-predicting students)
    y   = (D(z0 / s + shift) + 1) / 2           # shift: the VAE's shift_factor (0 for SD)

The input latent goes in as ``z_t`` itself, as in one-step image-to-image students
(no noise is added), so the filter is deterministic and static content stays static.

A model directory (``save_pretrained``) holds::

    gencodec_filter.json        architecture "onestep", timestep, prediction_type,
                                alpha_cumprod, subfolders, the prompt it was made from,
                                optionally "base": the diffusers repository (directory
                                or hub id) that holds unet/, vae/ and scheduler/
    prompt_embeds.safetensors   {"prompt_embeds": 1 x L x D}: the static embedding
    unet/, vae/                 diffusers UNet2DConditionModel and AutoencoderKL
                                (here unless "base" names another place)

``from_pretrained`` also takes a plain diffusers repository (a distilled SD 2.1,
SD-Turbo) by hub id or directory: the timestep and prediction type then come from its
``scheduler/scheduler_config.json``, and ``prompt_embeds.safetensors`` must have been
added once with :func:`write_static_embedding` (the only step that needs a text
encoder, hence ``transformers``). ``HF_HUB_OFFLINE=1`` is honoured by huggingface_hub.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gencodec.errors import InputError
from gencodec.imageio import atomic_output, check_output
from gencodec.filters.model import CONFIG_NAME, FrameModel, read_config, write_config

EMBEDS_NAME = "prompt_embeds.safetensors"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    """``alphas_cumprod`` of a diffusers DDPM-family scheduler config (float64)."""
    n = int(scheduler_config.get("num_train_timesteps", 1000))
    b0 = float(scheduler_config.get("beta_start", 0.00085))
    b1 = float(scheduler_config.get("beta_end", 0.012))
    kind = scheduler_config.get("beta_schedule", "scaled_linear")
    if scheduler_config.get("trained_betas"):
        betas = torch.tensor(scheduler_config["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(b0, b1, n, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float64) ** 2
    else:
        raise InputError(f"scheduler beta_schedule {kind!r} is not supported "
                         "(linear, scaled_linear or trained_betas)")
    return torch.cumprod(1.0 - betas, dim=0)


class OneStepDiffusion(FrameModel):
    """VAE encoder -> one-step UNet at fixed t with a static embedding -> VAE decoder."""

    architecture = "onestep"

    def __init__(self, unet, vae, prompt_embeds: torch.Tensor, *, timestep: int = 999,
                 prediction_type: str = "epsilon", alpha_cumprod: float | None = None,
                 prompt: str | None = None):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(f"prediction_type {prediction_type!r}: use one of "
                             f"{', '.join(PREDICTION_TYPES)}")
        if prediction_type != "sample" and alpha_cumprod is None:
            raise InputError(f"prediction_type {prediction_type!r} needs alpha_cumprod")
        emb = torch.as_tensor(prompt_embeds, dtype=torch.float32)
        if emb.ndim == 2:
            emb = emb[None]
        cross = unet.config.cross_attention_dim
        if emb.ndim != 3 or emb.shape[0] != 1 or emb.shape[-1] != cross:
            raise InputError(f"prompt_embeds has shape {tuple(emb.shape)}; the UNet wants "
                             f"1 x L x {cross}")
        self.unet, self.vae = unet.eval(), vae.eval()
        self.register_buffer("prompt_embeds", emb)
        self.timestep, self.prediction_type, self.prompt = int(timestep), prediction_type, prompt
        self.alpha_cumprod = None if alpha_cumprod is None else float(alpha_cumprod)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.latent_channels = int(vae.config.latent_channels)
        vae_down = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_down = 2 ** (len(unet.config.block_out_channels) - 1)
        self.multiple = vae_down * unet_down
        self.receptive_field = None  # GroupNorm and self-attention are global

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.prompt_embeds.dtype
        x = x.to(dtype) * 2.0 - 1.0
        moments = self.vae.encoder(x)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        z = (moments[:, :self.latent_channels] - self.shift_factor) * self.scaling_factor
        t = torch.full((x.shape[0],), self.timestep, dtype=torch.long, device=x.device)
        emb = self.prompt_embeds.expand(x.shape[0], -1, -1)
        out = self.unet(z, t, encoder_hidden_states=emb, return_dict=False)[0]
        if self.prediction_type == "sample":
            z0 = out
        else:
            a = self.alpha_cumprod
            if self.prediction_type == "epsilon":
                z0 = (z - math.sqrt(1.0 - a) * out) / math.sqrt(a)
            else:
                z0 = math.sqrt(a) * z - math.sqrt(1.0 - a) * out
        z0 = z0 / self.scaling_factor + self.shift_factor
        if self.vae.post_quant_conv is not None:
            z0 = self.vae.post_quant_conv(z0)
        y = self.vae.decoder(z0)
        return ((y.float() + 1.0) * 0.5).clamp(0.0, 1.0)

    # -- persistence ---------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(d / "unet")
        self.vae.save_pretrained(d / "vae")
        save_file({"prompt_embeds": self.prompt_embeds.detach().float().cpu().contiguous()},
                  str(d / EMBEDS_NAME))
        write_config(d, {"architecture": self.architecture, "timestep": self.timestep,
                         "prediction_type": self.prediction_type,
                         "alpha_cumprod": self.alpha_cumprod, "prompt": self.prompt,
                         "unet_subfolder": "unet", "vae_subfolder": "vae",
                         "prompt_embeds": EMBEDS_NAME})

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike, *, prompt_embeds=None,
                        timestep: int | None = None, prediction_type: str | None = None,
                        torch_dtype: torch.dtype | None = None, **_) -> "OneStepDiffusion":
        """Load from a directory or hub id (see the module docstring).

        ``prompt_embeds`` (a tensor or a .safetensors path) overrides the stored one;
        ``timestep`` and ``prediction_type`` override the config."""
        try:
            from diffusers import AutoencoderKL, UNet2DConditionModel
        except ImportError:
            raise InputError("one-step diffusion models need diffusers: "
                             "pip install 'gencodec[diffusion]'") from None
        root = resolve(spec)
        cfg = read_config(root) if (root / CONFIG_NAME).is_file() else {}
        base = _base(root, cfg)
        sched = _read_json(base / "scheduler" / "scheduler_config.json")
        if not cfg:  # a plain diffusers repository: the scheduler gives t and the maths
            sched = sched or {}
            cfg = {"timestep": sched.get("num_train_timesteps", 1000) - 1,
                   "prediction_type": sched.get("prediction_type", "epsilon")}
        t = int(cfg.get("timestep", 999) if timestep is None else timestep)
        ptype = prediction_type or cfg.get("prediction_type", "epsilon")
        alpha = cfg.get("alpha_cumprod")
        if (timestep is not None or alpha is None) and sched is not None:
            table = alphas_cumprod(sched)
            if not 0 <= t < len(table):
                raise InputError(f"timestep {t}: the scheduler has {len(table)} timesteps")
            alpha = float(table[t])
        elif timestep is not None and t != int(cfg.get("timestep", 999)):
            # the stored alpha_cumprod belongs to the stored timestep
            raise InputError(f"{spec}: timestep {t} differs from the stored one and there "
                             "is no scheduler/scheduler_config.json to recompute alpha_cumprod")
        if prompt_embeds is None:
            prompt_embeds = root / cfg.get("prompt_embeds", EMBEDS_NAME)
            if not prompt_embeds.is_file():
                raise InputError(
                    f"{spec}: no {EMBEDS_NAME}: the filter replaces the text encoder by a "
                    "static embedding; make it once with gencodec.filters.onestep."
                    "write_static_embedding (needs transformers) or pass prompt_embeds")
        if isinstance(prompt_embeds, (str, os.PathLike)):
            try:
                prompt_embeds = load_file(str(prompt_embeds))["prompt_embeds"]
            except (OSError, KeyError, RuntimeError, SafetensorError) as exc:
                raise InputError(f"{prompt_embeds}: not a prompt_embeds file: {exc}") from None
        kw = {"low_cpu_mem_usage": False}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        try:
            unet = UNet2DConditionModel.from_pretrained(
                base, subfolder=cfg.get("unet_subfolder", "unet"), **kw)
            vae = AutoencoderKL.from_pretrained(
                base, subfolder=cfg.get("vae_subfolder", "vae"), **kw)
        except (OSError, ValueError) as exc:
            raise InputError(f"{spec}: cannot load the UNet/VAE: {exc}") from None
        model = cls(unet, vae, prompt_embeds, timestep=t, prediction_type=ptype,
                    alpha_cumprod=alpha, prompt=cfg.get("prompt"))
        if torch_dtype is not None:
            model.prompt_embeds = model.prompt_embeds.to(torch_dtype)
        return model.eval()


#: What a filter needs from a hub repository (no text encoder, no fp16 copies);
#: ``model.safetensors`` is the compact architecture's weights.
HUB_FILES = [CONFIG_NAME, EMBEDS_NAME, "model.safetensors", "scheduler/*.json", "unet/config.json",
             "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
             "vae/diffusion_pytorch_model.safetensors"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve(spec: str | os.PathLike) -> Path:
    """A local directory as is; a hub id as its snapshot (only :data:`HUB_FILES`),
    from the local cache alone when ``HF_HUB_OFFLINE`` is set."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InputError("hub ids need huggingface-hub: pip install "
                         "'gencodec[diffusion]'") from None
    offline = _offline()
    try:
        return Path(snapshot_download(str(spec), allow_patterns=HUB_FILES,
                                      local_files_only=offline))
    except Exception as exc:  # noqa: BLE001 - unknown repo, no network, not cached
        where = "the local hub cache (HF_HUB_OFFLINE is set)" if offline else "the hub"
        raise InputError(f"{spec}: cannot get this model from {where}: "
                         f"{type(exc).__name__}") from None


def _base(root: Path, cfg: dict) -> Path:
    """Where the UNet, VAE and scheduler live: ``root`` itself, or the diffusers
    repository (a directory, absolute or relative to ``root``, or a hub id) that the
    config's ``base`` names (see :func:`write_static_embedding`)."""
    base = cfg.get("base")
    if not base:
        return root
    local = root / Path(base).expanduser()  # an absolute base stays absolute
    return local if local.is_dir() else resolve(base)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable JSON: {exc}") from None


def write_static_embedding(model: str | os.PathLike, out_dir: str | os.PathLike,
                           prompt: str = "", *, timestep: int | None = None,
                           force: bool = False) -> Path:
    """Encode ``prompt`` once with the model's own text encoder and write
    ``prompt_embeds.safetensors`` and ``gencodec_filter.json`` into ``out_dir``.

    ``model`` is a diffusers repository (directory or hub id) with ``tokenizer/``,
    ``text_encoder/``, ``unet/``, ``vae/`` and ``scheduler/``. ``out_dir`` is that
    directory itself, or a new one: its config then names ``model`` as ``base``, where
    :meth:`OneStepDiffusion.from_pretrained` finds the UNet, VAE and scheduler. The
    embedding is the CLIP text encoder's last hidden state, 1 x L x D, for the prompt
    padded to L tokens, as diffusers pipelines compute ``prompt_embeds``; the timestep
    defaults to the last training step, and ``alpha_cumprod`` is Eq. 1's
    ``alphas_cumprod[t]`` of the scheduler. Existing files need ``force``.

    This is the only step that loads a text encoder (``transformers``); loading and
    running the filter afterwards does not need it."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise InputError("computing the static embedding needs transformers "
                         "(pip install transformers); run time does not") from None
    root, d = resolve(model), Path(out_dir)
    targets = [d / EMBEDS_NAME, d / CONFIG_NAME]
    if d.is_dir():
        for path in targets:
            check_output(path, force)
    sched = _read_json(root / "scheduler" / "scheduler_config.json")
    if sched is None:
        raise InputError(f"{model}: no scheduler/scheduler_config.json, which gives the "
                         "timestep, the prediction type and alpha_cumprod")
    table = alphas_cumprod(sched)
    t = len(table) - 1 if timestep is None else int(timestep)
    if not 0 <= t < len(table):
        raise InputError(f"timestep {t}: the scheduler has {len(table)} timesteps")
    try:  # by the name given: a hub snapshot from resolve() holds no text encoder
        tok = CLIPTokenizer.from_pretrained(str(model), subfolder="tokenizer")
        enc = CLIPTextModel.from_pretrained(str(model), subfolder="text_encoder").eval()
    except (OSError, ValueError) as exc:
        raise InputError(f"{model}: cannot load tokenizer/ and text_encoder/: {exc}") from None
    # model_max_length is 77 in SD repositories, "unlimited" where a config omits it
    length = min(tok.model_max_length, enc.config.max_position_embeddings)
    ids = tok([prompt], padding="max_length", max_length=length, truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        emb = enc(ids).last_hidden_state.float()
    cfg = {"architecture": "onestep", "timestep": t,
           "prediction_type": sched.get("prediction_type", "epsilon"),
           "alpha_cumprod": float(table[t]),
           "prompt": prompt, "unet_subfolder": "unet", "vae_subfolder": "vae",
           "prompt_embeds": EMBEDS_NAME}
    d.mkdir(parents=True, exist_ok=True)
    if d.resolve() != root.resolve():
        local = Path(model).expanduser()
        cfg["base"] = str(local.resolve()) if local.is_dir() else str(model)
    with atomic_output(targets[0], force) as tmp:
        save_file({"prompt_embeds": emb.contiguous()}, str(tmp))
    write_config(d, cfg)
    return d
