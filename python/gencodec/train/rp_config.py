"""The options of ``gencodec train rp`` (:class:`RPConfig`) and the constants they
default to, kept free of torch so that building the command line does not import it;
the recipe itself is :mod:`gencodec.train.rp`."""

from __future__ import annotations

import dataclasses

#: The paper's QP range for diff-BPG.
QP_RANGE = (10.0, 50.0)
#: diff-JPEG's quality range (IJG quality; mapped onto QP_RANGE for lambda).
JPEG_QUALITY_RANGE = (10.0, 90.0)
#: Qualities of the validation BD-rate, per codec (about 0.1 to 0.8 bpp on photos).
VAL_QUALITIES = {"bpg": (27.0, 32.0, 37.0, 42.0), "jpeg": (10.0, 25.0, 50.0, 75.0)}
VAL_METRICS = ("psnr-y", "ms-ssim", "haarpsi", "gmsd")
#: Fourier terms of the surrogate's rounding while training (the surrogates' own default
#: is 10). Measured on training patches through diff-BPG (directional derivatives against
#: central differences of the 10-term surrogate): with 10 terms the gradient of the L1
#: distortion is about 5x too large and dominated by the derivative's spikes near
#: half-integers (up to 2N + 1), which drove the compact model towards sharpening (more
#: real bits, worse metrics); with 4 terms it is within 1.2-2x, and the bits'
#: derivative stays within 10 % of the differences.
TRAIN_TERMS = 4


@dataclasses.dataclass
class RPConfig:
    """Everything a run depends on (the CLI's options)."""

    train: str
    out: str
    val: str | None = None
    codec: str = "bpg"
    #: A frame model to fine-tune (directory, registry id, hub id); None: a new compact.
    model: str | None = None
    channels: int = 16
    blocks: int = 2
    scale: int = 4
    keep_means: int = 1  # new compact model: keeps every k x k block mean (1: off)
    chroma_sigma: float = 0.0  # new compact model: chroma low-pass of the output (0: off)
    lora_rank: int = 0
    steps: int = 2000
    batch: int = 8
    crop: int = 128
    patch: int = 256
    jnd_threshold: float = 0.8
    candidates_per_image: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-8
    #: Linear warm-up steps before the cosine decay (0: the paper's plain cosine).
    warmup: int = 0
    w_p: float = 1.0
    rate_scale: float = 1.0
    #: k > 1: L1 and the perceptual term compare k x k average-pooled images
    distortion_pool: int = 1
    #: Fourier terms of the surrogate's rounding (:data:`TRAIN_TERMS`).
    terms: int = TRAIN_TERMS
    quality_lo: float | None = None
    quality_hi: float | None = None
    perceptual: str = "auto"
    weights_dir: str | None = None
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    val_every: int = 500
    val_side: int = 256
    val_qualities: tuple[float, ...] | None = None
    val_metrics: tuple[str, ...] = VAL_METRICS
    device: str = "auto"
    precision: str = "auto"
    resume: bool = False
    force: bool = False

    #: Fields that may change between a run and its resumption.
    RESUMABLE = ("out", "val", "log_every", "ckpt_every", "keep_checkpoints", "val_every",
                 "val_side", "val_qualities", "val_metrics", "device", "precision",
                 "resume", "force", "weights_dir")

    def identity(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RESUMABLE}
