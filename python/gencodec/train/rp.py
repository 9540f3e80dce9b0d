"""Rate-perception fine-tuning of a preprocessing model through a codec surrogate.

Guo et al., Sec. 3.3 and 4.1. A :class:`~gencodec.filters.FrameModel` ``P`` is trained
so that the stock codec ``C`` (imitated by its differentiable surrogate, diff-BPG or
diff-JPEG) spends fewer bits on ``P(x)`` at the same perceived quality of the decoded
image against the *original* ``x``. Eq. 6::

    (x_hat, bits) = surrogate(P(x), q)
    L = L1(x_hat, x) + w_p * L_perceptual(x_hat, x) + lambda(QP) * bpp

with Eq. 7's schedule ``lambda(QP) = exp(w1 QP + w2)``, ``w1 = -0.115``, ``w2 = 1.145``
and the QP drawn uniformly from [10, 50] at every step. Through diff-JPEG the quality
is drawn from :data:`JPEG_QUALITY_RANGE` and mapped linearly onto that QP range (the
best quality to QP 10, the worst to QP 50) to give its lambda.

**Perceptual term.** DISTS (the paper's choice) when its weights are present locally
(:mod:`gencodec.eval.learned`); otherwise ``1 - DSS`` (DCT subband similarity,
Balanov et al., ICIP 2015, ``piq.dss``), which needs no weights. DSS was chosen because
it is *not* one of the metrics the trained models are judged on (HaarPSI, VSI, FSIM,
GMSD, reported MS-SSIM and PSNR), nor a variant of them: it compares the local energy
of each 8 x 8 DCT subband, the representation block codecs quantise, instead of
gradient magnitude (GMSD, MDSI), phase congruency (FSIM), saliency (VSI), Haar
wavelet responses (HaarPSI) or luminance-contrast-structure statistics (SSIM family).
Training on a metric used for judging would flatter the results.

**What trains.** A one-step diffusion model (:class:`~gencodec.filters.onestep.
OneStepDiffusion`): only the query, key and value projections of the attention layers
in the UNet's transformer blocks (Eq. 4), or, with ``lora_rank > 0``, LoRA adapters on
them (``peft``), merged into the weights when the model is saved; the VAE and all else
stay frozen. Any other frame model (the compact CNN): all weights. A new compact model
starts as the identity (zero output convolution).

**Optimiser.** Adam, lr 1e-3 with cosine decay to 1e-8 over the run (Sec. 4.1);
optionally after a linear warm-up (:func:`lr_schedule`), not in the paper.

Each step's batch and quality are a pure function of ``(seed, step)``
(:class:`~gencodec.train.data.PatchSampler`), so a resumed run continues exactly the
curve of an uninterrupted one, and DDP ranks split the same global batch (gradients
are averaged, so any world size takes the same steps).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gencodec.errors import InputError
from gencodec.filters.model import FrameModel
from gencodec.train import common
from gencodec.train.data import PatchSampler, validation_images
from gencodec.train.rp_config import JPEG_QUALITY_RANGE, QP_RANGE, VAL_QUALITIES, RPConfig

#: Eq. 7 coefficients.
LAMBDA_W1, LAMBDA_W2 = -0.115, 1.145
#: Names of the trainable one-step parameters: attention Q/K/V in transformer blocks.
ATTENTION_QKV = re.compile(r"transformer_blocks\.\d+\.attn\d+\.to_[qkv]\b")
LOSS_COLUMNS = ("loss", "l1", "perceptual", "bpp", "lambda", "quality", "lr")


def rate_lambda(qp: float) -> float:
    """Eq. 7: ``exp(-0.115 QP + 1.145)``."""
    return math.exp(LAMBDA_W1 * qp + LAMBDA_W2)


@dataclasses.dataclass(frozen=True)
class QualitySchedule:
    """The quality a step trains at and its lambda: QP ~ U[10, 50] for bpg, IJG
    quality ~ U[lo, hi] for jpeg (lambda at the QP it maps to)."""

    codec: str
    lo: float
    hi: float

    @classmethod
    def for_codec(cls, codec: str, lo: float | None = None, hi: float | None = None):
        default = QP_RANGE if codec == "bpg" else JPEG_QUALITY_RANGE
        lo, hi = default[0] if lo is None else lo, default[1] if hi is None else hi
        if not lo < hi:
            raise InputError(f"quality range {lo:g}..{hi:g} is empty")
        return cls(codec, float(lo), float(hi))

    def qp(self, q: float) -> float:
        """The QP whose lambda quality ``q`` uses (JPEG: :data:`JPEG_QUALITY_RANGE`
        mapped linearly onto :data:`QP_RANGE`, whatever range ``q`` is drawn from)."""
        if self.codec == "jpeg":
            (q_lo, q_hi), (qp_lo, qp_hi) = JPEG_QUALITY_RANGE, QP_RANGE
            return qp_hi - (qp_hi - qp_lo) * (q - q_lo) / (q_hi - q_lo)
        return q

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))


class Perceptual(torch.nn.Module):
    """The perceptual loss: DISTS with local weights, else ``1 - DSS`` (module doc).
    ``kind``: ``auto``, ``dists`` (fails without weights) or ``dss``."""

    def __init__(self, kind: str = "auto", weights_dir: str | None = None):
        super().__init__()
        from gencodec.eval import learned

        if kind not in ("auto", "dists", "dss"):
            raise InputError(f"perceptual loss must be auto, dists or dss, got {kind!r}")
        res = learned.resolve_weights("dists", weights_dir)
        if kind == "dists" and not res.complete:
            raise InputError(f"DISTS weights not found ({res.missing_files()} in "
                             f"{', '.join(map(str, learned.search_dirs(weights_dir)))})")
        self.kind = "dists" if kind != "dss" and res.complete else "dss"
        self.dists = None
        if self.kind == "dists":
            self.dists = learned.DISTS(res.found["backbone"], res.found["alpha_beta"])
            self.dists.requires_grad_(False).eval()

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.dists is not None:
            return self.dists(x_hat, x).reshape(-1).mean()
        from gencodec.eval.metrics import _piq

        x_hat = x_hat.clamp(0.0, 1.0)
        if x_hat.requires_grad:
            # DSS takes sqrt(var_x * var_y) of each subband: where both are zero (flat
            # 8x8 blocks, common in coded images) its gradient is 0 * inf = NaN; those
            # entries carry no information, so they are zeroed
            x_hat = x_hat * 1.0
            x_hat.register_hook(lambda g: torch.nan_to_num(g, nan=0.0, posinf=0.0,
                                                           neginf=0.0))
        sim = _piq("dss").dss(x_hat, x, data_range=1.0, reduction="none")
        return 1.0 - sim.mean()


# -- the model -----------------------------------------------------------------------------
def build_model(cfg: RPConfig) -> FrameModel:
    """The model a run starts from: ``cfg.model`` loaded, or a new compact network
    that starts as the identity (its output convolution is zero)."""
    if cfg.model:
        from gencodec.filters.model import load_frame_model

        return load_frame_model(cfg.model)
    from gencodec.filters.compact import CompactFilterNet

    model = CompactFilterNet(cfg.channels, cfg.blocks, cfg.scale, cfg.keep_means,
                             cfg.chroma_sigma)
    with torch.no_grad():
        model.conv_out.weight.zero_()
        model.conv_out.bias.zero_()
    return model


def is_onestep(model: FrameModel) -> bool:
    return getattr(model, "architecture", "") == "onestep"


def prepare_trainable(model: FrameModel, lora_rank: int = 0) -> list[torch.nn.Parameter]:
    """Freeze what the recipe keeps fixed (module docstring) and return the trainable
    parameters. LoRA (``lora_rank > 0``) is added to the one-step UNet in place."""
    if not is_onestep(model):
        if lora_rank:
            raise InputError("LoRA applies to one-step diffusion models; the compact "
                             "model trains all its weights")
        model.requires_grad_(True)
        return list(model.parameters())
    model.requires_grad_(False)
    if lora_rank:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise InputError("LoRA needs peft: pip install 'gencodec[train]'") from None
        config = LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights=True,
                            target_modules=r".*" + ATTENTION_QKV.pattern)
        inject_adapter_in_model(config, model.unet)
        for name, p in model.unet.named_parameters():
            p.requires_grad_("lora_" in name)
    else:
        for name, p in model.unet.named_parameters():
            p.requires_grad_(bool(ATTENTION_QKV.search(name)))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the UNet has no attention Q/K/V projections in transformer blocks")
    return params


def trainable_fraction(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def merged_copy(model: FrameModel) -> FrameModel:
    """A copy of ``model`` with LoRA adapters merged into the base weights and
    removed (the model itself when there are none)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return model
    if not any(isinstance(m, LoraLayer) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    return model


def save_model(model: FrameModel, directory: Path) -> Path:
    """``save_pretrained`` (LoRA merged) into a temporary folder renamed to
    ``directory`` (a previous one is replaced: it is this run's own output)."""
    tmp = directory.with_name(f".{directory.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    merged_copy(model).save_pretrained(tmp)
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def lr_schedule(opt: torch.optim.Optimizer, cfg: RPConfig):
    """Cosine decay from ``cfg.lr`` to ``cfg.lr_min`` over the run (Sec. 4.1), after
    ``cfg.warmup`` steps of linear warm-up from ``cfg.lr / 100`` when asked. Adam's
    first steps move every weight by about the learning rate whatever its gradient,
    which throws a model that starts at the identity off; warm-up avoids that."""
    sched = torch.optim.lr_scheduler
    if not cfg.warmup:
        return sched.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr_min)
    return sched.SequentialLR(opt, [
        sched.LinearLR(opt, start_factor=0.01, total_iters=cfg.warmup),
        sched.CosineAnnealingLR(opt, T_max=cfg.steps - cfg.warmup, eta_min=cfg.lr_min)],
        milestones=[cfg.warmup])


# -- one step ------------------------------------------------------------------------------
def rp_loss(x: torch.Tensor, x_hat: torch.Tensor, bits: torch.Tensor, lam: float,
            perceptual: Perceptual, w_p: float, pool: int = 1) -> dict[str, torch.Tensor]:
    """Eq. 6 and its parts (means over the batch). With ``pool = k > 1`` the two
    distortion terms compare the images after k x k average pooling (a viewer at the
    distance GMSD and HaarPSI assume for k = 2), the rate stays that of the full image."""
    bpp = (bits.float() / (x.shape[-2] * x.shape[-1])).mean()
    if pool > 1:
        x, x_hat = F.avg_pool2d(x, pool), F.avg_pool2d(x_hat, pool)
    l1 = (x_hat - x).abs().mean()
    per = perceptual(x_hat, x)
    return {"loss": l1 + w_p * per + lam * bpp, "l1": l1, "perceptual": per, "bpp": bpp}


# -- validation ----------------------------------------------------------------------------
def run_model(model: FrameModel, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The model on one HxWx3 uint8 image (padded to its multiple), uint8 out."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    m = int(model.multiple)
    x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate").to(device)
    with torch.no_grad():
        y = model(x)[..., :h, :w].float().clamp(0.0, 1.0)
    return (y[0] * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def validate(model: FrameModel, images: list[tuple[str, np.ndarray]], codec_name: str,
             qualities, metrics, device: torch.device) -> dict[str, float]:
    """BD-rate (%) of model + real codec against the plain codec on ``images``, per
    metric, on the mean rate-quality curve over the images (rate: payload bits per
    pixel, without the container header). NaN where it cannot be computed."""
    from gencodec.codecs_ext import get_codec
    from gencodec.eval.bdrate import bd_rate
    from gencodec.eval.metrics import METRICS

    codec = get_codec(codec_name)
    was_training = model.training
    model.eval()
    curves = {kind: {"bpp": np.zeros(len(qualities)),
                     **{m: np.zeros(len(qualities)) for m in metrics}}
              for kind in ("plain", "model")}
    for _, image in images:
        inputs = {"plain": image, "model": run_model(model, image, device)}
        for kind, source in inputs.items():
            for i, q in enumerate(qualities):
                stream = codec.encode(source, quality=q)
                decoded = codec.decode(stream)
                c = curves[kind]
                c["bpp"][i] += 8.0 * len(codec.payload(stream)) / image.shape[0] / image.shape[1]
                for m in metrics:
                    c[m][i] += METRICS[m].fn(image, decoded)
    model.train(was_training)
    n = float(len(images))
    out = {"val_bpp_plain": float(curves["plain"]["bpp"].mean() / n),
           "val_bpp_model": float(curves["model"]["bpp"].mean() / n)}
    for m in metrics:
        r = bd_rate(curves["plain"]["bpp"] / n, curves["plain"][m] / n,
                    curves["model"]["bpp"] / n, curves["model"][m] / n,
                    higher_is_better=METRICS[m].higher_is_better)
        out[f"val_bd_{m}"] = float("nan") if r.value is None else r.value
    return out


# -- the run -------------------------------------------------------------------------------
def _check_config(cfg: RPConfig) -> None:
    if cfg.codec not in ("bpg", "jpeg"):
        raise InputError(f"codec must be bpg or jpeg (the surrogates), got {cfg.codec!r}")
    for name in ("steps", "batch", "crop", "log_every", "ckpt_every", "val_every", "terms",
                 "keep_means", "distortion_pool"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name} must be at least 1")
    if cfg.lora_rank < 0:
        raise InputError("lora rank must be >= 0")
    from gencodec.filters.compact import MAX_CHROMA_SIGMA

    if not 0.0 <= cfg.chroma_sigma <= MAX_CHROMA_SIGMA:
        raise InputError(f"chroma sigma must be in 0..{MAX_CHROMA_SIGMA:g} pixels, got "
                         f"{cfg.chroma_sigma}")
    if cfg.crop < 32 or cfg.crop > cfg.patch:
        raise InputError(f"crop must be in 32..patch ({cfg.patch}) (DSS pools the worst 5% "
                         f"of 8x8 blocks), got {cfg.crop}")
    if cfg.crop // cfg.distortion_pool < 32:
        raise InputError(f"crop / distortion pool must be at least 32 (the perceptual term's "
                         f"least size), got {cfg.crop} / {cfg.distortion_pool}")
    if not 0 <= cfg.warmup < cfg.steps:
        raise InputError(f"warm-up must be in 0..steps-1, got {cfg.warmup}")
    from gencodec.eval.metrics import METRICS

    unknown = [m for m in cfg.val_metrics if m not in METRICS or METRICS[m].learned]
    if unknown:
        raise InputError(f"validation metrics must be weight-free metrics, not {unknown}")


def train(cfg: RPConfig, *, surrogate: torch.nn.Module | None = None,
          stream=None) -> Path:
    """Run (or resume) the fine-tuning; return the saved model folder ``OUT/model``.

    ``surrogate``: the differentiable codec (default: ``get_surrogate(cfg.codec)`` with
    ``cfg.terms`` Fourier terms).
    Writes ``OUT/checkpoints/step-N.pt``, ``OUT/log.csv``, ``OUT/loss.png``,
    ``OUT/config.json`` and ``OUT/model``. Under ``torchrun`` only rank 0 writes.
    ``stream``: where messages go (default: ``sys.stderr`` at call time)."""
    stream = stream or sys.stderr
    _check_config(cfg)
    dist = common.ddp_setup(cfg.device)
    try:
        per_rank = common.per_rank_batch(cfg.batch, dist)
        run = common.RunFolder(cfg.out, dist, resume=cfg.resume, force=cfg.force)
        common.seed_everything(cfg.seed)
        model = build_model(cfg)
        params = prepare_trainable(model, cfg.lora_rank)
        n_train, n_total = trainable_fraction(model)
        if dist.is_main:
            print(f"rp: {model.describe()}; trainable {n_train:,} of {n_total:,} parameters "
                  f"({100.0 * n_train / n_total:.3g}%)", file=stream)
        model.to(dist.device)
        if surrogate is None:
            from gencodec.codecs_ext.surrogates import get_surrogate

            surrogate = get_surrogate(cfg.codec, terms=cfg.terms)
        surrogate = surrogate.to(dist.device).eval().requires_grad_(False)
        perceptual = Perceptual(cfg.perceptual, cfg.weights_dir).to(dist.device)
        sampler = PatchSampler.from_folder(cfg.train, patch=cfg.patch, crop=cfg.crop,
                                           jnd_threshold=cfg.jnd_threshold,
                                           candidates_per_image=cfg.candidates_per_image,
                                           seed=cfg.seed)
        schedule = QualitySchedule.for_codec(cfg.codec, cfg.quality_lo, cfg.quality_hi)
        val = validation_images(cfg.val, cfg.val_side) if cfg.val and dist.is_main else []
        val_q = tuple(cfg.val_qualities or VAL_QUALITIES[cfg.codec])
        identity = {**cfg.identity(), "data": sampler.fingerprint()}

        opt = torch.optim.Adam(params, lr=cfg.lr)
        sched = lr_schedule(opt, cfg)
        start = 0
        if run.resume_from is not None:
            payload = common.read_checkpoint(run.resume_from)
            common.check_resume_identity(run.resume_from, identity, payload["extra"])
            common.restore_checkpoint(payload, run.resume_from, model=model, optimizer=opt,
                                      scheduler=sched)
            start = int(payload["step"])
        dtype = common.autocast_dtype(dist.device, cfg.precision)
        scaler = common.grad_scaler(dtype)
        net = model
        if dist.distributed:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        columns = [*LOSS_COLUMNS, "val_bpp_plain", "val_bpp_model",
                   *[f"val_bd_{m}" for m in cfg.val_metrics]]
        run.start({**dataclasses.asdict(cfg), "data": identity["data"],
                   "perceptual_loss": perceptual.kind}, columns, start)
        lo = dist.rank * per_rank
        bar = tqdm(total=cfg.steps, initial=start, disable=not dist.is_main, file=stream,
                   desc="rp", dynamic_ncols=True)
        model.train()
        for step in range(start, cfg.steps):
            rng = sampler.rng(step)
            x = sampler.batch(rng, cfg.batch)[lo:lo + per_rank].to(dist.device)
            q = schedule.draw(rng)
            lam = cfg.rate_scale * rate_lambda(schedule.qp(q))
            with common.autocast(dist.device, dtype):
                y = net(x)
            x_hat, bits = surrogate(y.float(), q)
            parts = rp_loss(x, x_hat, bits, lam, perceptual, cfg.w_p, cfg.distortion_pool)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:  # fp16: the scaler skips steps with non-finite grads
                scaler.scale(parts["loss"]).backward()
                scaler.step(opt)
                scaler.update()
            else:
                parts["loss"].backward()
                if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
                    opt.step()
                else:  # same decision on every rank: the gradients are all-reduced
                    bar.write(f"step {step + 1}: non-finite gradient, update skipped")
            lr = sched.get_last_lr()[0]
            sched.step()
            done = step + 1
            values = torch.stack([parts[k].detach().float() for k in ("loss", "l1",
                                                                      "perceptual", "bpp")])
            values = common.mean_over_ranks(values, dist)
            bar.update(1)
            if common.due(done, cfg.log_every, cfg.steps):
                row = dict(zip(("loss", "l1", "perceptual", "bpp"), values.tolist()),
                           **{"lambda": lam, "quality": q, "lr": lr})
                bar.set_postfix(loss=f"{row['loss']:.4f}", bpp=f"{row['bpp']:.3f}")
                run.write(done, **row)
            if val and common.due(done, cfg.val_every, cfg.steps):
                res = validate(model, val, cfg.codec, val_q, cfg.val_metrics, dist.device)
                run.write(done, **res)
                bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()))
            if common.due(done, cfg.ckpt_every, cfg.steps):
                run.checkpoint(
                    done, lambda path: common.save_checkpoint(
                        path, model=model, optimizer=opt, scheduler=sched, step=done,
                        trainable_only=True, extra={"identity": identity}),
                    keep=cfg.keep_checkpoints,
                    plot=[c for c in columns if c not in ("lr", "quality")],
                    title=f"rate-perception fine-tuning ({cfg.codec})")
        bar.close()
        return run.finish(lambda folder: save_model(model, folder))
    finally:
        common.ddp_teardown()
