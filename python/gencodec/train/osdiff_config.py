"""The options of ``gencodec train osdiff`` (:class:`OSDiffTrainConfig`) and the paper's
constants they default to, kept free of torch so that building the command line does
not import it; the recipe itself is :mod:`gencodec.train.osdiff`.

Sources (Jia et al., "One-Step Diffusion for Perceptual Image Compression", Sec. III-A):
lambda_1 = 1, lambda_3 = 2, lambda_4 = 0.01, lambda_2 in {1, 2} by rate; AdamW (8-bit)
with betas (0.9, 0.999) and lr 1e-4; random 512 x 512 crops. Not in the paper, taken
from the public training code (cheesejiang/OSDiff): the discriminator's timestep
t ~ U{0 .. 999}, gradient clipping at norm 1 for the generator and the discriminator,
and AdamW for the entropy model's quantiles (CompressAI's auxiliary loss), lr 1e-3 as
CompressAI's examples.
"""

from __future__ import annotations

import dataclasses

#: Eq. 13's weights fixed by the paper (lambda_2, the rate weight, is per model).
LAMBDA_DIFF, LAMBDA_FEATURE, LAMBDA_GAN = 1.0, 2.0, 0.01
#: Optimisers: AdamW 8-bit through bitsandbytes when it imports (auto), or plain AdamW.
OPTIMIZERS = ("auto", "adamw8bit", "adamw")


@dataclasses.dataclass
class OSDiffTrainConfig:
    """Everything a run depends on (the CLI's options)."""

    train: str
    out: str
    #: The frozen VAE and UNet: a diffusers Stable Diffusion folder (``unet/``, ``vae/``,
    #: ``scheduler/``) or hub id.
    backbone: str | None = None
    #: A rate model folder (``OSDiff.save_rate_model``) to start from; None: new weights.
    init: str | None = None
    #: A JSON file of ``OSDiffConfig`` fields for new weights; None: the public sizes.
    codec_config: str | None = None
    lambda_rate: float = 1.0                 # lambda_2
    lambda_diff: float = LAMBDA_DIFF         # lambda_1
    lambda_feature: float = LAMBDA_FEATURE   # lambda_3
    lambda_gan: float = LAMBDA_GAN           # lambda_4
    steps: int = 100000
    batch: int = 4
    crop: int = 512
    #: Photos are box-downscaled to this short side before cropping (0: full size).
    short_side: int = 0
    lr: float = 1e-4
    lr_disc: float = 1e-4
    lr_aux: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    optimizer: str = "auto"
    #: The discriminator's timesteps are drawn from U{t_min .. t_max - 1}.
    disc_t_min: int = 0
    disc_t_max: int = 1000
    #: Width of the discriminator's per-feature-map heads.
    disc_hidden: int = 64
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    device: str = "auto"
    precision: str = "auto"
    resume: bool = False
    force: bool = False

    #: Fields that may change between a run and its resumption.
    RESUMABLE = ("out", "steps", "log_every", "ckpt_every", "keep_checkpoints", "device",
                 "precision", "resume", "force")

    def identity(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RESUMABLE}
