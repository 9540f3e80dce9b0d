"""Training of the OSDiff codec (Jia et al., "One-Step Diffusion for Perceptual Image
Compression", Sec. II-D and III-A; options in :mod:`gencodec.train.osdiff_config`).

What trains: the codec (G_a, G_s, the hyperprior entropy model) and the control branch
of the one-step decoder (``OSDiff.trainable_parameters()``), the entropy model's
quantiles (auxiliary loss), and the discriminator heads
(:class:`~gencodec.osdiff.discriminator.FeatureDiscriminator`). The SD VAE and UNet
stay frozen. Each step alternates, as the public code does:

1. **Generator update** (Eq. 13)::

       L_G_total = l1 ||y_0 - y_r||^2 + l2 R(y_hat) + l3 ||y_0 - y_c||^2 + l4 L_G

   with Eq. 9's ``||y_0 - y_r||^2`` and Eq. 11's ``||y_0 - y_c||^2`` as means over the
   latent's elements, Eq. 10's rate ``R`` in bits per image pixel from the entropy
   model's likelihoods, and Eq. 12's ``L_G = -log D(y_r^t)`` on ``y_r`` re-noised to a
   random ``t``. ``L_G`` is differentiated through the frozen UNet into ``y_r`` and so
   into the codec and the control branch (the public code computes these logits under
   ``torch.no_grad()``, which silently drops the adversarial term's gradient); the
   discriminator's parameters take no gradient on this update.
2. **Auxiliary update**: CompressAI's ``aux_loss`` moves the entropy bottleneck's
   quantiles (its own optimiser; the other losses never touch them).
3. **Discriminator update** (Eq. 14) on ``y_0^t`` and ``y_r^t`` (the generator's output
   of step 1, detached) at a fresh ``t`` and noise shared by both.

Optimisers: AdamW, betas (0.9, 0.999), lr 1e-4 for the generator and the
discriminator (8-bit through ``bitsandbytes`` when it imports and the device is CUDA,
as the paper; plain AdamW otherwise), AdamW without weight decay for the quantiles
(as CompressAI's aux optimiser); gradient norms clipped at 1 (public code). Under fp16
autocast the generator and discriminator updates go through their own GradScalers
(the auxiliary loss runs in float32); the latent codec always runs in float32
(:meth:`gencodec.osdiff.model.OSDiff.forward`).

Randomness is keyed by the step: the crops of the *global* batch come from
``numpy.random.default_rng([seed, step])`` (:class:`gencodec.train.data.PhotoCrops`);
the discriminator's timesteps and noise from a torch generator seeded with ``(seed,
step, phase)``; the start noise ``y_T`` of Eq. 8 and the rate proxy's uniform noise of
each image from generators keyed by ``(seed, step, index of the image in the global
batch)`` (the model runs one image at a time for that, :meth:`OSDiffTrainer._forward`).
Each DDP rank takes its slice of the global batch and the gradients are averaged over
the ranks, so a resumed run continues the same curve and ``torchrun`` with N processes
follows one process with the same global batch (up to the order of float sums).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from gencodec.errors import InputError
from gencodec.osdiff.discriminator import (FeatureDiscriminator, discriminator_loss,
                                           generator_loss, renoise)
from gencodec.train import common
from gencodec.train.data import PhotoCrops
from gencodec.train.osdiff_config import OPTIMIZERS, OSDiffTrainConfig

__all__ = ["OSDiffTrainConfig", "OSDiffTrainer", "generator_losses", "train"]

LOG_COLUMNS = ("loss", "diff", "rate", "feature", "gan", "d_loss", "d_real", "d_fake",
               "d_accuracy", "aux", "grad_g", "grad_d")
#: Phases of the keyed random draws.
_PHASE_GAN, _PHASE_DISC, _PHASE_START_NOISE, _PHASE_RATE_NOISE = 0, 1, 2, 3


# -- losses --------------------------------------------------------------------------------
def generator_losses(out, gan: torch.Tensor, cfg: OSDiffTrainConfig) -> dict[str, torch.Tensor]:
    """Eq. 13 (``loss``) and its terms: ``diff`` (Eq. 9), ``rate`` (Eq. 10, bits per
    pixel), ``feature`` (Eq. 11) and ``gan`` (Eq. 12, given)."""
    diff = F.mse_loss(out.y_r.float(), out.y0.float())
    feature = F.mse_loss(out.y_c.float(), out.y0.float())
    rate = out.bpp.float().mean()
    loss = (cfg.lambda_diff * diff + cfg.lambda_rate * rate + cfg.lambda_feature * feature
            + cfg.lambda_gan * gan)
    return {"loss": loss, "diff": diff, "rate": rate, "feature": feature, "gan": gan}


# -- optimisers ----------------------------------------------------------------------------
def make_adamw(params, lr: float, cfg: OSDiffTrainConfig, device: torch.device):
    """AdamW (module docstring): 8-bit (bitsandbytes) when asked or, for ``auto``, when
    it imports and the device is CUDA; plain ``torch.optim.AdamW`` otherwise."""
    kw = dict(lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if cfg.optimizer != "adamw" and device.type == "cuda":
        try:
            import bitsandbytes as bnb
        except ImportError:
            bnb = None
        if bnb is not None:
            return bnb.optim.AdamW8bit(params, **kw)
    if cfg.optimizer == "adamw8bit":
        raise InputError("8-bit AdamW needs bitsandbytes and a CUDA device "
                         "(pip install bitsandbytes), or use --optimizer adamw")
    return torch.optim.AdamW(params, **kw)


# -- the trainer ---------------------------------------------------------------------------
class OSDiffTrainer:
    """The model, the discriminator and their three optimisers; one
    :meth:`train_step` is a generator, an auxiliary and a discriminator update."""

    def __init__(self, model, cfg: OSDiffTrainConfig, dist: common.DistInfo | None = None):
        self.cfg, self.dist = cfg, dist or common.DistInfo()
        if cfg.crop % model.pad_multiple:
            raise InputError(f"crop {cfg.crop} must be a multiple of {model.pad_multiple} "
                             "(the VAE's and the latent codec's downsampling)")
        if cfg.disc_t_max > len(model.alphas_cumprod):
            raise InputError(f"disc t_max {cfg.disc_t_max}: the schedule has "
                             f"{len(model.alphas_cumprod)} steps")
        dev = self.dist.device
        self.model = model.to(dev).train()
        self.model.requires_grad_(False)
        model.vae.eval()  # frozen: inference behaviour
        model.unet.eval()
        self.g_params, self.aux_params = model.trainable_parameters(), model.aux_parameters()
        for p in (*self.g_params, *self.aux_params):
            p.requires_grad_(True)
        self.disc = FeatureDiscriminator(self._feature_channels(), cfg.disc_hidden).to(dev)
        self.amp = common.autocast_dtype(dev, cfg.precision)
        self.opt_g = make_adamw(self.g_params, cfg.lr, cfg, dev)
        self.opt_d = make_adamw(list(self.disc.parameters()), cfg.lr_disc, cfg, dev)
        # the quantiles are positions, not weights: no decay towards 0 (CompressAI's)
        self.opt_aux = torch.optim.AdamW(self.aux_params, lr=cfg.lr_aux, weight_decay=0.0)
        # fp16 only: a scaler per loss (their updates alternate); None for bf16 / fp32
        self.scaler_g, self.scaler_d = common.grad_scaler(self.amp), common.grad_scaler(self.amp)
        self.step = 0

    def _feature_channels(self) -> list[int]:
        """The channel counts of ``unet_features``, from one small probe."""
        side = self.model.pad_multiple // self.model.vae_factor
        probe = torch.zeros(1, self.model.vae.config.latent_channels, side, side,
                            device=self.dist.device)
        t = torch.zeros(1, dtype=torch.long, device=self.dist.device)
        with torch.no_grad():
            return [int(f.shape[1]) for f in self.model.unet_features(probe, t)]

    # -- randomness keyed by (seed, step, phase) --------------------------------------------
    def _key(self, phase: int, sample: int = 0) -> int:
        """The seed of ``phase``'s draws at this step (for ``sample``: the index of an
        image in the global batch): sha256 of the four numbers, so no two keys collide
        whatever the batch size."""
        digest = hashlib.sha256(f"{self.cfg.seed} {self.step} {phase} {sample}".encode())
        return int.from_bytes(digest.digest()[:8], "little") % 2 ** 63

    def _draws(self, phase: int, shape: tuple[int, ...], per_rank: int):
        """This rank's slice of the global batch's timesteps and noise."""
        g = torch.Generator().manual_seed(self._key(phase))
        n = per_rank * self.dist.world_size
        t = torch.randint(self.cfg.disc_t_min, self.cfg.disc_t_max, (n,), generator=g)
        noise = torch.randn((n, *shape), generator=g)
        sl = slice(self.dist.rank * per_rank, (self.dist.rank + 1) * per_rank)
        return t[sl].to(self.dist.device), noise[sl].to(self.dist.device)

    def _scores(self, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
        """The discriminator's logit maps for ``y`` re-noised to ``t`` (Eq. 4)."""
        y_t = renoise(y.float(), t, noise, self.model.alphas_cumprod)
        with common.autocast(self.dist.device, self.amp):
            feats = self.model.unet_features(y_t, t)
        return self.disc([f.float() for f in feats])

    def _forward(self, x: torch.Tensor):
        """The model on this rank's images, one sample at a time: the start noise y_T of
        Eq. 8 and the model's own draws (the rate proxy's uniform noise) of each sample
        are keyed by its index in the global batch, so the outputs do not depend on how
        the batch is split over processes."""
        first = self.dist.rank * x.shape[0]
        f = self.model.vae_factor
        shape = (self.model.vae.config.latent_channels, x.shape[-2] // f, x.shape[-1] // f)
        outs = []
        for i in range(x.shape[0]):
            g = torch.Generator().manual_seed(self._key(_PHASE_START_NOISE, first + i))
            y_T = torch.randn((1, *shape), generator=g).to(self.dist.device)
            torch.manual_seed(self._key(_PHASE_RATE_NOISE, first + i))
            with common.autocast(self.dist.device, self.amp):
                outs.append(self.model(x[i:i + 1], training=True, noise=y_T))
        return _concat(outs)

    def _update(self, loss: torch.Tensor, params: list, opt, scaler=None) -> float:
        """Backward, average the gradients over the ranks, clip, step; returns the
        gradient norm (the step is skipped, on every rank alike, when it is not finite).
        With an fp16 ``scaler``, the loss is scaled and the gradients unscaled before
        clipping; the scaler skips non-finite steps and adapts its scale."""
        opt.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        grads = [p.grad for p in params if p.grad is not None]
        if self.dist.distributed and grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= self.dist.world_size
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))
        if scaler is not None:
            scaler.unscale_(opt)
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if grads else torch.zeros(())
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        elif torch.isfinite(norm):
            opt.step()
        return float(norm)

    # -- the three updates ------------------------------------------------------------------
    def generator_step(self, x: torch.Tensor):
        """One update of the codec and control branch on Eq. 13; returns the logs and
        the detached ``(y_0, y_r)`` for the discriminator."""
        self.disc.requires_grad_(False)
        try:
            out = self._forward(x.to(self.dist.device))
            t, noise = self._draws(_PHASE_GAN, tuple(out.y_r.shape[1:]), x.shape[0])
            gan = generator_loss(self._scores(out.y_r, t, noise))
            losses = generator_losses(out, gan, self.cfg)
            norm = self._update(losses["loss"], self.g_params, self.opt_g, self.scaler_g)
        finally:
            self.disc.requires_grad_(True)
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs["grad_g"] = norm
        return logs, out.y0.detach().float(), out.y_r.detach().float()

    def aux_step(self) -> dict[str, float]:
        """One update of the entropy model's quantiles on its auxiliary loss (a function
        of the entropy model's weights alone, the same on every rank: nothing to
        average)."""
        aux = self.model.aux_loss()
        self.opt_aux.zero_grad(set_to_none=True)
        aux.backward()
        self.opt_aux.step()
        return {"aux": float(aux.detach())}

    def discriminator_step(self, y0: torch.Tensor, y_r: torch.Tensor) -> dict[str, float]:
        """One update of the discriminator heads on Eq. 14."""
        t, noise = self._draws(_PHASE_DISC, tuple(y0.shape[1:]), y0.shape[0])
        abar = self.model.alphas_cumprod
        with torch.no_grad(), common.autocast(self.dist.device, self.amp):
            real = self.model.unet_features(renoise(y0, t, noise, abar), t)
            fake = self.model.unet_features(renoise(y_r, t, noise, abar), t)
        parts = discriminator_loss(self.disc([f.float() for f in real]),
                                   self.disc([f.float() for f in fake]))
        norm = self._update(parts["loss"], list(self.disc.parameters()), self.opt_d,
                            self.scaler_d)
        logs = {f"d_{k}": float(v.detach()) for k, v in parts.items()}
        logs["grad_d"] = norm
        return logs

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """Generator, auxiliary and discriminator updates; the step counter +1."""
        logs, y0, y_r = self.generator_step(x)
        logs.update(self.aux_step())
        logs.update(self.discriminator_step(y0, y_r))
        self.step += 1
        return logs

    # -- checkpoints ------------------------------------------------------------------------
    def trained_modules(self) -> torch.nn.ModuleDict:
        """What a checkpoint holds besides the optimisers (the frozen backbone is
        reloaded): the latent codec and control branch (weights and buffers) and the
        discriminator."""
        return torch.nn.ModuleDict({"latent_codec": self.model.latent_codec,
                                    "control": self.model.control, "disc": self.disc})

    def save(self, path, extra: dict | None = None):
        """An atomic checkpoint of what trains and the three optimisers."""
        state = {"opt_d": self.opt_d.state_dict(), "opt_aux": self.opt_aux.state_dict(),
                 **(extra or {})}
        for name in ("scaler_g", "scaler_d"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).state_dict()
        return common.save_checkpoint(path, model=self.trained_modules(), optimizer=self.opt_g,
                                      step=self.step, extra=state)

    def load(self, path, identity: dict) -> dict:
        """Restore :meth:`save`'s state; a checkpoint of another run ``identity`` is
        refused before anything is restored."""
        payload = common.read_checkpoint(path)
        common.check_resume_identity(path, identity, payload["extra"])
        common.restore_checkpoint(payload, path, model=self.trained_modules(),
                                  optimizer=self.opt_g)
        self.opt_d.load_state_dict(payload["extra"]["opt_d"])
        self.opt_aux.load_state_dict(payload["extra"]["opt_aux"])
        for name in ("scaler_g", "scaler_d"):
            if getattr(self, name) is not None and name in payload["extra"]:
                getattr(self, name).load_state_dict(payload["extra"][name])
        self.step = int(payload["step"])
        return payload


def _concat(outs: list):
    """One model output from per-sample outputs (tensors and dicts of tensors joined
    along the batch; None stays None)."""
    def join(values):
        if values[0] is None:
            return None
        if isinstance(values[0], dict):
            return {k: torch.cat([v[k] for v in values]) for k in values[0]}
        return torch.cat(values)

    fields = dataclasses.fields(outs[0])
    return type(outs[0])(**{f.name: join([getattr(o, f.name) for o in outs]) for f in fields})


# -- the run -------------------------------------------------------------------------------
def _check_config(cfg: OSDiffTrainConfig) -> None:
    for name in ("steps", "batch", "crop", "log_every", "ckpt_every", "disc_hidden"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name} must be at least 1")
    if cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                         f"{cfg.optimizer!r}")
    if not 0 <= cfg.disc_t_min < cfg.disc_t_max:
        raise InputError(f"need 0 <= disc t_min < t_max, got {cfg.disc_t_min}, "
                         f"{cfg.disc_t_max}")
    for name in ("lambda_rate", "lambda_diff", "lambda_feature", "lambda_gan"):
        if getattr(cfg, name) < 0:
            raise InputError(f"{name} must be >= 0")
    if cfg.init and cfg.codec_config:
        raise InputError("a run starts from a rate model (--init) or from new weights of a "
                         "configuration (--codec-config), not both")


def build_model(cfg: OSDiffTrainConfig):
    """The model a run starts from: the frozen backbone ``cfg.backbone`` with the rate
    model ``cfg.init``, or with new weights of ``cfg.codec_config`` (default: the public
    model's sizes). Its config records ``cfg.lambda_rate``."""
    from gencodec.osdiff.model import OSDiff, OSDiffConfig

    if not cfg.backbone:
        raise InputError("a backbone (--backbone: Stable Diffusion folder or hub id) is needed")
    try:
        if cfg.init:
            config = OSDiff.read_config(cfg.init)
        elif cfg.codec_config:
            config = OSDiffConfig.from_dict(json.loads(Path(cfg.codec_config).read_text()))
        else:
            config = OSDiffConfig()
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{cfg.init or cfg.codec_config}: not an OSDiff config ({exc})") \
            from None
    model = OSDiff.from_backbone(cfg.backbone, dataclasses.replace(config,
                                                                    lambda_rate=cfg.lambda_rate))
    if cfg.init:
        model.load_rate_model(cfg.init)
        model.config = dataclasses.replace(model.config, lambda_rate=cfg.lambda_rate)
    return model


def save_model(model, directory: Path) -> Path:
    """The entropy tables updated, ``save_rate_model`` into a temporary folder renamed
    to ``directory`` (a previous one is replaced: it is this run's own output)."""
    model.update_entropy_tables()
    tmp = directory.with_name(f".{directory.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_rate_model(tmp)
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def train(cfg: OSDiffTrainConfig, *, stream=None) -> Path:
    """Run (or resume) OSDiff training; return the rate model folder ``OUT/model``.

    Writes ``OUT/checkpoints/step-N.pt``, ``OUT/log.csv``, ``OUT/loss.png``,
    ``OUT/config.json`` and ``OUT/model`` (``OSDiff.save_rate_model``, entropy tables
    updated). Under ``torchrun`` only rank 0 writes. ``stream``: where messages go
    (default: ``sys.stderr`` at call time)."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    _check_config(cfg)
    dist = common.ddp_setup(cfg.device)
    try:
        per_rank = common.per_rank_batch(cfg.batch, dist)
        run = common.RunFolder(cfg.out, dist, resume=cfg.resume, force=cfg.force)
        common.seed_everything(cfg.seed)
        sampler = PhotoCrops(cfg.train, cfg.crop, cfg.seed, cfg.short_side)
        model = build_model(cfg)
        trainer = OSDiffTrainer(model, cfg, dist)
        identity = {**cfg.identity(), "data": sampler.fingerprint()}
        if run.resume_from is not None:
            trainer.load(run.resume_from, identity)
        n_g = sum(p.numel() for p in trainer.g_params)
        n_d = sum(p.numel() for p in trainer.disc.parameters())
        n_all = sum(p.numel() for p in model.parameters())
        if dist.is_main:
            print(f"osdiff: training {n_g:,} of {n_all:,} model parameters and {n_d:,} "
                  f"discriminator parameters ({type(trainer.opt_g).__name__})", file=stream)
        run.start({**dataclasses.asdict(cfg), "data": identity["data"],
                   "optimizer_class": type(trainer.opt_g).__name__}, LOG_COLUMNS, trainer.step)
        lo = dist.rank * per_rank
        bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not dist.is_main,
                   file=stream, desc="osdiff", dynamic_ncols=True)
        while trainer.step < cfg.steps:
            x = sampler.batch(trainer.step, cfg.batch)[lo:lo + per_rank]
            logs = trainer.train_step(x)
            values = torch.tensor([logs[k] for k in LOG_COLUMNS], dtype=torch.float64)
            values = common.mean_over_ranks(values, dist)
            done = trainer.step
            bar.update(1)
            if common.due(done, cfg.log_every, cfg.steps):
                row = dict(zip(LOG_COLUMNS, values.tolist()))
                bar.set_postfix(loss=f"{row['loss']:.4g}", bpp=f"{row['rate']:.3f}",
                                d=f"{row['d_loss']:.3g}")
                run.write(done, **row)
            if common.due(done, cfg.ckpt_every, cfg.steps):
                run.checkpoint(done, lambda path: trainer.save(path, extra={"identity": identity}),
                               keep=cfg.keep_checkpoints,
                               plot=["loss", "diff", "rate", "feature", "gan", "d_loss",
                                     "d_accuracy"],
                               title="OSDiff training", log_y=False)
        bar.close()
        return run.finish(lambda folder: save_model(model, folder))
    finally:
        common.ddp_teardown()
