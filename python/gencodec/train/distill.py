"""One-step CiD distillation: the alternating training loop (Guo et al., "Distillation";
the losses and their sources in :mod:`gencodec.train.cid_loss`).

:class:`CiDDistiller` holds the teacher ``f_phi`` (frozen), the fake score network
``f_psi``, the one-step student ``G_theta`` and its EMA, and alternates, as SiD and
SiD-LSG do (``training/sid_training_loop.py``):

1. ``fake_steps`` fake-score updates (SiD: 1): the student's outputs on the batch are
   computed without gradients, noised at ``t ~ U{t_min .. t_max-1}`` and ``f_psi`` is
   trained to denoise them (:func:`~gencodec.train.cid_loss.fake_score_loss`);
2. one student update on ``L_cid = L_id - xi L_score`` (Eqs. 2, 3) at fresh noise and
   timesteps, with ``f_phi`` and ``f_psi`` differentiated only through their input
   (their parameters take no gradient: the teacher's never, the fake network's not on
   this step), then the EMA of the student (SiD's half-life in images with ramp-up).

The networks can be anything that maps ``(z_t, t)`` to a denoised ``z_0``: diffusers
UNets (:mod:`gencodec.train.cid_networks`) for Stable Diffusion, or the exact Gaussian
denoisers of :mod:`gencodec.train.exact_teacher`. Both phases use the same batch of
input latents ``z_h``.

Randomness is keyed by the step: the timesteps and noise of the *global* batch come
from a generator seeded with ``(seed, step, phase)`` and each DDP rank takes its slice,
so a run resumed from a checkpoint repeats the uninterrupted one, and ``torchrun``
with N processes computes the same gradients as one process with the same global
batch (DDP averages the ranks' mean losses).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch

from gencodec.train import common
from gencodec.train.cid_loss import (add_noise, fake_score_loss, generator_losses,
                                     sample_timesteps, signal_noise)
from gencodec.train.distill_config import CiDConfig, DistillConfig

__all__ = ["CiDConfig", "CiDDistiller", "DistillConfig", "train"]


class CiDDistiller:
    """Teacher, fake score network, student and student EMA, with their optimizers."""

    def __init__(self, teacher: torch.nn.Module, fake: torch.nn.Module,
                 student: torch.nn.Module, config: CiDConfig, *,
                 alphas_cumprod: torch.Tensor, dist: common.DistInfo | None = None,
                 precision: str = "auto"):
        config.check()
        self.cfg, self.dist = config, dist or common.DistInfo()
        if config.global_batch % self.dist.world_size:
            raise ValueError(f"global batch {config.global_batch} is not divisible by the "
                             f"{self.dist.world_size} processes")
        if config.t_max > len(alphas_cumprod):
            raise ValueError(f"t_max {config.t_max}: the schedule has {len(alphas_cumprod)} steps")
        dev = self.dist.device
        self.abar = alphas_cumprod.to(torch.float64).to(dev)
        self.teacher = teacher.to(dev).requires_grad_(False).eval()
        self.fake, self.student = fake.to(dev).train(), student.to(dev).train()
        self.ema = copy.deepcopy(self.student).requires_grad_(False).eval()
        self.amp = common.autocast_dtype(dev, precision)
        self.scalers = {"fake": common.grad_scaler(self.amp), "student": common.grad_scaler(self.amp)}
        kw = dict(betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)
        self.opt_fake = torch.optim.Adam(self.fake.parameters(), lr=config.lr_fake, **kw)
        self.opt_student = torch.optim.Adam(self.student.parameters(), lr=config.lr_student, **kw)
        if self.dist.distributed:
            ids = [dev.index] if dev.type == "cuda" else None
            self._fake_ddp = torch.nn.parallel.DistributedDataParallel(self.fake, device_ids=ids)
            self._student_ddp = torch.nn.parallel.DistributedDataParallel(self.student, device_ids=ids)
        else:
            self._fake_ddp, self._student_ddp = self.fake, self.student
        self.step, self.nimg = 0, 0

    # -- randomness keyed by (seed, step, phase) --------------------------------------------
    def _draws(self, phase: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch's timesteps and noise."""
        c = self.cfg
        g = torch.Generator().manual_seed(((c.seed * 1_000_003 + self.step) * 64 + phase) % 2 ** 63)
        t = sample_timesteps(c.global_batch, c.t_min, c.t_max, g)
        noise = torch.randn((c.global_batch, *shape), generator=g)
        n = c.global_batch // self.dist.world_size
        sl = slice(self.dist.rank * n, (self.dist.rank + 1) * n)
        return t[sl].to(self.dist.device), noise[sl].to(self.dist.device)

    def _check_batch(self, z_h: torch.Tensor) -> torch.Tensor:
        n = self.cfg.global_batch // self.dist.world_size
        if z_h.shape[0] != n:
            raise ValueError(f"this process's batch has {z_h.shape[0]} latents, expected {n} "
                             f"(global batch {self.cfg.global_batch} / {self.dist.world_size})")
        return z_h.to(self.dist.device, torch.float32)

    def _update(self, name: str, loss: torch.Tensor, net: torch.nn.Module,
                opt: torch.optim.Optimizer) -> float:
        scaler = self.scalers[name]
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(
            net.parameters(), self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return float(norm)

    # -- the two phases -----------------------------------------------------------------------
    def fake_step(self, z_h: torch.Tensor, repeat: int = 0) -> dict[str, float]:
        """One fake-score update on the student's detached outputs for ``z_h``."""
        z_h = self._check_batch(z_h)
        with torch.no_grad(), common.autocast(self.dist.device, self.amp):
            z_g = self.student(z_h).float()
        t, noise = self._draws(1 + repeat, tuple(z_h.shape[1:]))
        z_t = add_noise(z_g, noise, self.abar, t)
        with common.autocast(self.dist.device, self.amp):
            f_fake = self._fake_ddp(z_t, t)
        a, s = signal_noise(self.abar, t)
        loss = fake_score_loss(f_fake, z_g, a, s)
        norm = self._update("fake", loss, self.fake, self.opt_fake)
        return {"loss_fake": float(loss.detach()), "grad_fake": norm}

    def student_step(self, z_h: torch.Tensor) -> dict[str, float]:
        """One student update on ``L_cid`` (Eq. 3), then the EMA."""
        z_h = self._check_batch(z_h)
        t, noise = self._draws(0, tuple(z_h.shape[1:]))
        self.fake.requires_grad_(False)
        try:
            with common.autocast(self.dist.device, self.amp):
                z_g = self._student_ddp(z_h).float()
                z_t = add_noise(z_g, noise, self.abar, t)
                f_real = self.teacher(z_t, t)
                f_fake = self.fake(z_t, t)  # the module itself: no DDP hooks on this step
            losses = generator_losses(f_real, f_fake, z_h, z_g, xi=self.cfg.xi,
                                      anchor=self.cfg.anchor, weighting=self.cfg.weighting)
            norm = self._update("student", losses["L_cid"], self.student, self.opt_student)
        finally:
            self.fake.requires_grad_(True)
        self.nimg += self.cfg.global_batch
        self._update_ema()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out.update(grad_student=norm, mse_input=float(((z_g - z_h) ** 2).mean().detach()))
        return out

    def train_step(self, z_h: torch.Tensor) -> dict[str, float]:
        """``fake_steps`` fake-score updates, one student update; the step counter +1."""
        logs = {}
        for i in range(self.cfg.fake_steps):
            logs.update(self.fake_step(z_h, repeat=i))
        logs.update(self.student_step(z_h))
        self.step += 1
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        c = self.cfg
        half = c.ema_halflife_kimg * 1000.0
        if c.ema_rampup > 0:
            half = min(half, self.nimg * c.ema_rampup)
        beta = 0.5 ** (c.global_batch / max(half, 1e-8))
        for p_ema, p in zip(self.ema.parameters(), self.student.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.ema.buffers(), self.student.buffers()):
            b_ema.copy_(b)

    # -- checkpoints ------------------------------------------------------------------------
    def trained_modules(self) -> torch.nn.ModuleDict:
        """What a checkpoint holds besides the optimizers (the teacher is reloaded)."""
        return torch.nn.ModuleDict({"student": self.student, "fake": self.fake, "ema": self.ema})

    def save(self, path, extra: dict | None = None):
        """An atomic checkpoint (:func:`gencodec.train.common.save_checkpoint`)."""
        state = {"opt_fake": self.opt_fake.state_dict(), "nimg": self.nimg,
                 "scalers": {k: s.state_dict() for k, s in self.scalers.items() if s},
                 "config": dataclasses.asdict(self.cfg), **(extra or {})}
        return common.save_checkpoint(path, model=self.trained_modules(),
                                      optimizer=self.opt_student, step=self.step, extra=state)

    def load(self, path, identity: dict) -> dict:
        """Restore :meth:`save`'s state; a checkpoint of another run ``identity`` or
        other options is refused before anything is restored."""
        payload = common.read_checkpoint(path)
        common.check_resume_identity(path, identity, payload["extra"])
        saved = payload["extra"].get("config", {})
        mine = dataclasses.asdict(self.cfg)
        differ = sorted(k for k in mine if k in saved and saved[k] != mine[k]
                        and not isinstance(mine[k], tuple))
        if differ:
            raise ValueError(f"{path}: written with other options ({', '.join(differ)}); "
                             "resume with the same options or start a new run")
        common.restore_checkpoint(payload, path, model=self.trained_modules(),
                                  optimizer=self.opt_student)
        extra = payload["extra"]
        self.opt_fake.load_state_dict(extra["opt_fake"])
        for k, s in self.scalers.items():
            if s and k in extra.get("scalers", {}):
                s.load_state_dict(extra["scalers"][k])
        self.step, self.nimg = int(payload["step"]), int(extra["nimg"])
        return payload


# -- the Stable Diffusion run ------------------------------------------------------------------
LOG_COLUMNS = ("loss_fake", "L_id", "L_score", "L_cid", "grad_fake", "grad_student", "mse_input")


def train(cfg: DistillConfig, stream=None):
    """Run (or resume) a distillation; return the student's model folder ``OUT/model``.

    Writes ``OUT/checkpoints/step-N.pt``, ``OUT/log.csv``, ``OUT/loss.png``,
    ``OUT/config.json`` and ``OUT/model`` (the EMA student, a one-step filter model).
    Under ``torchrun`` only rank 0 writes."""
    import sys

    from tqdm import tqdm

    from gencodec.diffusion.sd import vae_latent
    from gencodec.errors import InputError
    from gencodec.train.cid_networks import build_networks, load_teacher, save_student
    from gencodec.train.data import PhotoCrops

    stream = stream or sys.stderr
    for name in ("steps", "size", "log_every", "ckpt_every"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name} must be at least 1")
    try:
        cfg.cid.check()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    dist = common.ddp_setup(cfg.device)
    try:
        per_rank = common.per_rank_batch(cfg.cid.global_batch, dist)
        run = common.RunFolder(cfg.out, dist, resume=cfg.resume, force=cfg.force)
        common.seed_everything(cfg.cid.seed)
        sampler = PhotoCrops(cfg.train, cfg.size, cfg.cid.seed, preload=False)
        teacher = load_teacher(cfg.teacher)
        real, fake, student = build_networks(teacher, cfg.cid.t_init)
        if cfg.gradient_checkpointing:
            for net in (real, fake, student.denoiser):
                net.unet.enable_gradient_checkpointing()
        vae = teacher.vae.to(dist.device).eval().requires_grad_(False)
        multiple = 2 ** (len(vae.config.block_out_channels) - 1) * \
            2 ** (len(teacher.unet.config.block_out_channels) - 1)
        if cfg.size % multiple:
            raise InputError(f"crop size {cfg.size} must be a multiple of {multiple}")
        trainer = CiDDistiller(real, fake, student, cfg.cid, alphas_cumprod=teacher.alphas_cumprod,
                               dist=dist, precision=cfg.precision)
        identity = cfg.identity()
        if run.resume_from is not None:
            trainer.load(run.resume_from, identity)
        run.start(dataclasses.asdict(cfg), LOG_COLUMNS, trainer.step)
        lo = dist.rank * per_rank
        bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not dist.is_main,
                   file=stream, desc="distill", dynamic_ncols=True)
        while trainer.step < cfg.steps:
            x = sampler.batch(trainer.step, cfg.cid.global_batch)[lo:lo + per_rank]
            with torch.no_grad(), common.autocast(dist.device, trainer.amp):
                # z_h: the VAE's scaled posterior mean, as the filter computes it
                z_h = vae_latent(vae, x.to(dist.device) * 2.0 - 1.0).float()
            logs = trainer.train_step(z_h)
            values = torch.tensor([logs[k] for k in LOG_COLUMNS], dtype=torch.float64)
            values = common.mean_over_ranks(values, dist)
            done = trainer.step
            bar.update(1)
            if common.due(done, cfg.log_every, cfg.steps):
                row = dict(zip(LOG_COLUMNS, values.tolist()))
                bar.set_postfix(L_cid=f"{row['L_cid']:.4g}", fake=f"{row['loss_fake']:.4g}")
                run.write(done, **row)
            if common.due(done, cfg.ckpt_every, cfg.steps):
                run.checkpoint(done, lambda path: trainer.save(path, extra={"identity": identity}),
                               keep=cfg.keep_checkpoints,
                               plot=["loss_fake", "L_id", "L_score", "L_cid", "mse_input"],
                               title="CiD distillation", log_y=False)
        bar.close()
        return run.finish(lambda folder: save_student(trainer.ema, teacher, folder))
    finally:
        common.ddp_teardown()
