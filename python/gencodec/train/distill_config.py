"""The options of ``gencodec train distill`` (:class:`CiDConfig`, :class:`DistillConfig`),
kept free of torch so that building the command line does not import it. Their sources
are documented in :mod:`gencodec.train.cid_loss`."""

from __future__ import annotations

import dataclasses

#: Anchors of L_id: CiD's input latent z_h (Eq. 2) or SiD's student output z_g.
ANCHORS = ("input", "student")
#: w(t): SiD's per-sample normalisation, or none.
WEIGHTINGS = ("sid", "none")


@dataclasses.dataclass
class CiDConfig:
    """Every option of the distillation; the defaults and their sources are in
    :mod:`gencodec.train.cid_loss` and the CLI's help."""

    t_init: int = 625            # SiD-LSG --init_timestep
    t_min: int = 20              # SiD-LSG --tmin
    t_max: int = 980             # SiD-LSG --tmax (exclusive)
    xi: float = 1.0              # Eq. 3; SiD-LSG's alpha = 1
    anchor: str = "input"        # "input": CiD's z_h (Eq. 2); "student": SiD's z_g
    weighting: str = "sid"       # w(t): SiD's 1 / mean|anchor - f_phi|, or "none"
    fake_steps: int = 1          # fake-score updates per student update (SiD: 1)
    lr_student: float = 1e-5     # the paper: fixed 1e-5
    lr_fake: float = 1e-5
    adam_beta1: float = 0.0      # SiD: Adam betas (0, 0.999)
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 0.0       # max gradient norm, 0: off
    ema_halflife_kimg: float = 50.0  # SiD-LSG --ema 0.05 (Mimg)
    ema_rampup: float = 0.05     # SiD: half-life <= images seen * ramp-up
    global_batch: int = 1
    seed: int = 0

    def check(self) -> None:
        if not 0 <= self.t_min < self.t_max:
            raise ValueError(f"need 0 <= t_min < t_max, got {self.t_min}, {self.t_max}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor {self.anchor!r}: use one of {ANCHORS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting {self.weighting!r}: use one of {WEIGHTINGS}")
        if self.fake_steps < 1 or self.global_batch < 1:
            raise ValueError("fake_steps and global_batch must be at least 1")


@dataclasses.dataclass
class DistillConfig:
    """A ``gencodec train distill`` run: data, teacher, output and :class:`CiDConfig`."""

    teacher: str
    train: str
    out: str
    cid: CiDConfig = dataclasses.field(default_factory=CiDConfig)
    size: int = 512
    steps: int = 10000
    gradient_checkpointing: bool = False
    device: str = "auto"
    precision: str = "auto"
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    force: bool = False

    #: Fields that may change between a run and its resumption.
    RESUMABLE = ("out", "steps", "device", "precision", "log_every", "ckpt_every",
                 "keep_checkpoints", "resume", "force", "gradient_checkpointing")

    def identity(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RESUMABLE}
