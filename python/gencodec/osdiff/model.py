"""OSDiff: one-step diffusion for perceptual image compression (Jia et al., paper 002).

The model (Fig. 2, Eqs. 1-3 and 8)::

    y0  = E_SD(x)                      frozen SD VAE encoder (posterior mean, scaled)
    y_c = G_s(Q(G_a(y0)))              the latent codec (entropy coded, Eq. 1)
    y_r = (y_T - sqrt(1 - a_T) eps) / sqrt(a_T),  eps = UNet+ctrl(y_T, T, y_c)   (Eq. 8)
    x^  = D_SD(y_r)                    frozen SD VAE decoder

with T = 999 and y_T Gaussian noise. Only the latent codec and the control branch
train (:meth:`OSDiff.trainable_parameters`); the VAE and the UNet are frozen.

Interface for training (``gencodec.train.osdiff``)::

    model = OSDiff.from_backbone(sd_folder, OSDiffConfig())   # or OSDiff(cfg, vae, unet, alphas)
    out = model(x, training=True)          # x in [0, 1]: y0, y_c, y_r, likelihoods, bpp
    feats = model.unet_features(z_t, t)    # Eq. 14 discriminator input
    model.aux_loss(); model.update_entropy_tables()
    model.save_rate_model(folder); OSDiff.load_rate_model(...)

and for coding: :meth:`OSDiff.compress` / :meth:`OSDiff.decompress` (the codec
``osdiff`` in :mod:`gencodec.codecs_ext.osdiff` frames them in the container).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gencodec.diffusion.sd import vae_image, vae_latent
from gencodec.osdiff.control import ControlBranch, unet_features
from gencodec.osdiff.latent_codec import LATENT_MULTIPLE, LatentCodec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class OSDiffConfig:
    """Sizes of the trained parts (defaults: the public model, ``configs/model/osdiff.yaml``)."""

    #: G_a's width (the public ``enc_mid[0]``)
    enc_mid: int = 64
    #: hyperprior and G_s width (N) and coded latent channels (M)
    n: int = 192
    m: int = 320
    #: ELIC's uneven channel slices (sum = M)
    slices: tuple[int, ...] = (8, 8, 8, 8, 16, 16, 32, 32, 96, 96)
    #: widths of the channel-context convolutions
    context_width: tuple[int, int] = (224, 128)
    #: control branch width as a fraction of the UNet's, its attention head size, and
    #: the scale of its injections
    control_ratio: float = 0.2
    control_head_channels: int = 16
    control_scale: float = 1.0
    #: the one denoising step starts at this timestep (Eq. 8)
    timestep: int = 999
    #: the seed of the shared noise y_T the codec decodes from
    noise_seed: int = 0
    #: lambda_2 of Eq. 13 this rate model was trained with (a record; larger = fewer bits)
    lambda_rate: float = 1.0

    @classmethod
    def tiny(cls, **overrides) -> "OSDiffConfig":
        """A configuration of about 90k trained parameters for tests with tiny backbones."""
        base = dict(enc_mid=8, n=16, m=16, slices=(2, 2, 4, 8), context_width=(8, 8),
                    control_ratio=0.5, control_head_channels=2)
        base.update(overrides)
        return cls(**base)

    def same_architecture(self, other: "OSDiffConfig") -> bool:
        """Whether ``other`` builds the same modules (``lambda_rate`` is a record)."""
        return dataclasses.replace(self, lambda_rate=0) == dataclasses.replace(other,
                                                                               lambda_rate=0)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "OSDiffConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown OSDiff config keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        for key in ("slices", "context_width"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclasses.dataclass
class OSDiffOutput:
    """What :meth:`OSDiff.forward` returns (batch first)."""

    y0: torch.Tensor           # E_SD(x), scaled (the target of Eqs. 9 and 11)
    y_c: torch.Tensor          # G_s(y_hat): the condition (Eq. 1)
    y_r: torch.Tensor          # the one-step reconstruction (Eq. 8)
    likelihoods: dict          # {"y": ..., "z": ...}
    bpp: torch.Tensor          # (B,) rate from the likelihoods (Eq. 10)
    x_hat: torch.Tensor | None = None  # D_SD(y_r) in [0, 1], with decode=True


def likelihood_bpp(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """The rate of Eq. 10 from the entropy model's likelihoods: -sum log2 p / pixels,
    per image (not the coded size: see ``gencodec.codecs_ext.bits_per_pixel``)."""
    return sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values()) / num_pixels


class OSDiff(nn.Module):
    """The OSDiff model (see the module docstring)."""

    def __init__(self, config: OSDiffConfig, vae, unet, alphas_cumprod,
                 prediction_type: str = "epsilon", prompt_embeds: torch.Tensor | None = None):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type {prediction_type!r} unsupported")
        self.config, self.prediction_type = config, prediction_type
        self.vae, self.unet = vae, unet
        for frozen in (vae, unet):
            frozen.requires_grad_(False)
            frozen.eval()
        latent = vae.config.latent_channels
        self.latent_codec = LatentCodec(latent, config.enc_mid, config.n, config.m,
                                        config.slices, config.context_width)
        self.control = ControlBranch(unet, latent, config.control_ratio,
                                     config.control_head_channels, config.control_scale)
        ac = torch.as_tensor(np.asarray(alphas_cumprod, np.float64))
        if not 0 <= config.timestep < len(ac):
            raise ValueError(f"timestep {config.timestep} outside the schedule's {len(ac)}")
        self.register_buffer("alphas_cumprod", ac.float(), persistent=False)
        if prompt_embeds is None:
            prompt_embeds = torch.zeros(1, 77, unet.config.cross_attention_dim)
        self.register_buffer("prompt_embeds", prompt_embeds.float(), persistent=False)
        #: VAE downsampling; image sides are coded in multiples of ``pad_multiple``
        #: (the VAE's factor times the latent codec's 8: 64 for SD)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.pad_multiple = self.vae_factor * LATENT_MULTIPLE

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, folder: str | Path, config: OSDiffConfig,
                      device: str = "cpu", dtype=torch.float32) -> "OSDiff":
        """Load the frozen VAE, UNet, scheduler (and conditioning) of a diffusers SD
        folder (``unet/``, ``vae/``, ``scheduler/``) and build fresh trainable parts."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        from gencodec.diffusion.sd import load_conditioning, resolve_folder

        folder = resolve_folder(folder)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
        sched = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        prompt, _ = load_conditioning(folder, unet.config.cross_attention_dim)
        model = cls(config, vae, unet, sched.alphas_cumprod.numpy(),
                    sched.config.prediction_type, prompt)
        model.control.to(dtype)  # the latent codec stays float32 (see forward)
        return model.to(device)

    def trainable_state_dict(self) -> dict:
        """The weights of the trained parts (latent codec with its entropy tables,
        control branch): what a rate model file holds."""
        return {k: v for k, v in self.state_dict().items()
                if k.startswith(("latent_codec.", "control."))}

    def load_trainable_state_dict(self, state: dict, strict: bool = True) -> None:
        own = set(self.trainable_state_dict())
        if strict:
            missing, unexpected = own - set(state), set(state) - own
            if missing or unexpected:
                raise KeyError(f"rate model keys differ: missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(unexpected)[:5]}")
        self.load_state_dict(state, strict=False)

    def save_rate_model(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (trained parts only)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(self.config.to_json() + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in
                   self.trainable_state_dict().items()}, str(folder / WEIGHTS_NAME))

    @staticmethod
    def read_config(folder: str | Path) -> OSDiffConfig:
        return OSDiffConfig.from_dict(json.loads((Path(folder) / CONFIG_NAME).read_text()))

    def load_rate_model(self, folder: str | Path) -> None:
        """Load a folder written by :meth:`save_rate_model` (its config must match)."""
        from safetensors.torch import load_file

        cfg = self.read_config(folder)
        if not cfg.same_architecture(self.config):
            raise ValueError(f"{folder}: its config differs from this model's")
        self.config = cfg
        self.load_trainable_state_dict(load_file(str(Path(folder) / WEIGHTS_NAME)))

    # -- the parts -------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Latent codec (except the quantiles, see :meth:`aux_parameters`) and control."""
        return [p for n, p in self.latent_codec.named_parameters() if not n.endswith("quantiles")] \
            + list(self.control.parameters())

    def aux_parameters(self) -> list[nn.Parameter]:
        """The entropy bottleneck's quantiles (the auxiliary optimizer's)."""
        return [p for n, p in self.latent_codec.named_parameters() if n.endswith("quantiles")]

    def aux_loss(self) -> torch.Tensor:
        return self.latent_codec.aux_loss()

    def update_entropy_tables(self) -> None:
        """Rebuild the hyper latent's integer CDF tables (after training, before coding)."""
        self.latent_codec.update()

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """y0 = E_SD(x): the posterior mean of the frozen VAE, scaled
        (:func:`gencodec.diffusion.sd.vae_latent`); x in [0, 1]."""
        with torch.no_grad():
            return vae_latent(self.vae, x.to(self.vae.dtype) * 2 - 1).float()

    def decode_latent(self, y: torch.Tensor) -> torch.Tensor:
        """D_SD(y) in [0, 1] (gradients flow to y, not to the frozen decoder)."""
        return ((vae_image(self.vae, y).float() + 1) / 2).clamp(0, 1)

    def context(self, batch: int) -> torch.Tensor:
        return self.prompt_embeds.to(self.unet.dtype).expand(batch, -1, -1)

    def shared_noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """y_T of the codec: Philox normals keyed by the config's seed (the same on every
        machine and thread count)."""
        from gencodec import rcc

        n = int(np.prod(shape))
        noise = rcc.philox_normals(self.config.noise_seed, 0, 0, 0, n)
        return torch.from_numpy(np.asarray(noise, np.float32)).view(shape).to(
            self.alphas_cumprod.device)

    def eps(self, y_t: torch.Tensor, t: torch.Tensor, y_c: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction at (y_t, t) under the control of y_c."""
        dt = self.unet.dtype
        out = self.control(self.unet, y_t.to(dt), t, y_c.to(dt), self.context(len(y_t))).float()
        if self.prediction_type == "v_prediction":
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * y_t
        return out

    def denoise(self, y_c: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """y_r from y_T = ``noise`` (default: :meth:`shared_noise`) in one step from
        t = ``config.timestep`` (Eq. 8)."""
        y_t = self.shared_noise(tuple(y_c.shape)) if noise is None else noise
        y_c = y_c.float()
        t = torch.full((len(y_c),), self.config.timestep, device=y_c.device, dtype=torch.long)
        a = self.alphas_cumprod[self.config.timestep]
        return (y_t - (1 - a).sqrt() * self.eps(y_t, t, y_c)) / a.sqrt()

    def unet_features(self, z_t: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """Features of the frozen UNet's input blocks and middle block at (z_t, t), without
        the control branch (Eq. 14's discriminator reads them)."""
        return unet_features(self.unet, z_t.to(self.unet.dtype), t, self.context(len(z_t)))

    def forward(self, x: torch.Tensor, training: bool = True, decode: bool = False,
                noise: torch.Tensor | None = None) -> OSDiffOutput:
        """Eqs. 1-3 on a batch x in [0, 1] (sides multiples of :attr:`pad_multiple`). ``training`` uses
        the noisy rate proxy; y_T is ``noise`` (default: standard normal draws)."""
        y0 = self.encode_latent(x)
        # the latent codec in float32 even under autocast: in fp16 the likelihoods'
        # floor (1e-9) underflows and the rate's log2 of small bins loses its precision
        with torch.autocast(y0.device.type, enabled=False):
            y_c, _, likelihoods = self.latent_codec(y0.to(self.latent_codec.dtype), training)
        if noise is None:
            noise = torch.randn_like(y0)
        y_r = self.denoise(y_c, noise)
        bpp = likelihood_bpp(likelihoods, x.shape[-2] * x.shape[-1])
        x_hat = self.decode_latent(y_r) if decode else None
        return OSDiffOutput(y0, y_c, y_r, likelihoods, bpp, x_hat)

    # -- coding ------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> np.ndarray:
        """The entropy-coded words (uint32) of one image x (1, 3, H, W) in [0, 1], its
        sides multiples of :attr:`pad_multiple`."""
        self.check_size(x.shape[-2], x.shape[-1])
        words, _ = self.latent_codec.compress(self.encode_latent(x))
        return words

    @torch.no_grad()
    def decompress_latent(self, words: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        """y_hat of an image of ``shape`` (H, W) from the coded words."""
        self.check_size(*shape)
        f = self.vae_factor
        return self.latent_codec.decompress(words, (shape[0] // f, shape[1] // f))

    @torch.no_grad()
    def decompress(self, words: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        """The decoded image (1, 3, H, W) in [0, 1]: y_hat -> G_s -> one step -> D_SD."""
        y_hat = self.decompress_latent(words, shape)
        return self.decode_latent(self.denoise(self.latent_codec.g_s(y_hat).float()))

    def check_size(self, h: int, w: int) -> None:
        m = self.pad_multiple
        if h % m or w % m or h <= 0 or w <= 0:
            raise ValueError(f"OSDiff codes sides that are multiples of {m}, got {w}x{h}")
