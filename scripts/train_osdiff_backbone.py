#!/usr/bin/env python3
"""Train a compact diffusion backbone (a small VAE and latent UNet) for the embedded
OSDiff model (issue 14, item 5), in the diffusers folder layout that
``OSDiff.from_backbone`` and ``gencodec train osdiff --backbone`` read.

Two stages, on random crops of the training photos (``gencodec.train.data.PhotoCrops``,
keyed by ``(seed, step)``):

a. **VAE**: a small ``diffusers.AutoencoderKL`` (f = 2^(levels-1), 4 latent channels)
   trained on ``L1(x, D(z)) + kl_weight * KL(q(z|x) || N(0, I))`` with z sampled from
   the posterior (the recipe of SD's first stage without its LPIPS and GAN terms). Its
   ``scaling_factor`` is then set to 1 / std of the posterior means over a few batches,
   so the scaled latents have unit variance as SD's do.
b. **UNet**: a small ``diffusers.UNet2DConditionModel`` trained as an epsilon-prediction
   DDPM (Ho et al., Eq. 14: ``||eps - eps_theta(sqrt(a_t) y0 + sqrt(1 - a_t) eps, t)||^2``,
   t uniform in 0..999, SD's scaled-linear betas) on the VAE's scaled posterior means,
   with a fixed all-zero text embedding (1 x 77 x cross_dim, what ``OSDiff`` passes when
   the folder has no conditioning file).

Writes ``OUT/vae``, ``OUT/unet``, ``OUT/scheduler``, ``OUT/model_index.json``, the logs
``OUT/vae_log.csv``, ``OUT/unet_log.csv`` with their curves ``OUT/vae_loss.png``,
``OUT/unet_loss.png``, and checkpoints ``OUT/checkpoints/{vae,unet}-<step>.pt``. Each
stage also stops at ``--minutes`` of wall time (0: no limit) and saves what it reached.
Keep OUT outside the repository.

Example (then train the codec on it with ``gencodec train osdiff --backbone OUT``)::

    python scripts/train_osdiff_backbone.py --train /work/data/photos/train \\
        --out /work/ckpt/osdiff-small/backbone --crop 64 --vae-steps 300 --unet-steps 300
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from gencodec.diffusion.sd import vae_latent  # noqa: E402
from gencodec.errors import InputError  # noqa: E402
from gencodec.train import common  # noqa: E402
from gencodec.train.data import PhotoCrops  # noqa: E402

LATENT_CHANNELS = 4
#: the zero text embedding's length (as CLIP's, and OSDiff's default conditioning)
PROMPT_LENGTH = 77
VAE_COLUMNS = ("loss", "l1", "kl", "psnr")
UNET_COLUMNS = ("loss",)


# -- models --------------------------------------------------------------------------------
def build_vae(channels: tuple[int, ...], groups: int) -> "diffusers.AutoencoderKL":  # noqa: F821
    """A small AutoencoderKL: one resnet per level, f = 2^(len(channels) - 1)."""
    import diffusers

    n = len(channels)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(channels),
        latent_channels=LATENT_CHANNELS, norm_num_groups=groups, layers_per_block=1)


def build_unet(channels: tuple[int, ...], groups: int, cross_dim: int,
               head_dim: int) -> "diffusers.UNet2DConditionModel":  # noqa: F821
    """A small UNet2DConditionModel with SD 2.1's block types (cross-attention in every
    level but the deepest, linear projections)."""
    import diffusers

    n = len(channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return diffusers.UNet2DConditionModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, layers_per_block=1,
        block_out_channels=tuple(channels), down_block_types=down, up_block_types=up,
        cross_attention_dim=cross_dim, attention_head_dim=head_dim, norm_num_groups=groups,
        use_linear_projection=True)


def build_scheduler() -> "diffusers.DDPMScheduler":  # noqa: F821
    """1000-step DDPM with SD's scaled-linear betas, epsilon prediction."""
    import diffusers

    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                   beta_start=0.00085, beta_end=0.012,
                                   prediction_type="epsilon")


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- training ------------------------------------------------------------------------------
def _loop(steps: int, minutes: float, desc: str):
    """Step numbers 1..steps, ending early once ``minutes`` of wall time have passed."""
    from tqdm import tqdm

    start = time.monotonic()
    for step in tqdm(range(1, steps + 1), desc=desc, dynamic_ncols=True):
        yield step
        if minutes > 0 and time.monotonic() - start > 60 * minutes:
            print(f"{desc}: time limit of {minutes} min reached at step {step}", file=sys.stderr)
            return


def vae_loss(vae, x: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
    """Stage a's loss on images ``x`` in [0, 1]: L1 in [-1, 1] units on a posterior
    sample, plus ``kl_weight`` x the KL per latent element; ``psnr`` of that
    reconstruction (in [0, 1] units, for the log)."""
    x = x * 2 - 1
    posterior = vae.encode(x).latent_dist
    rec = vae.decode(posterior.sample()).sample
    l1 = (rec - x).abs().mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    with torch.no_grad():
        mse = ((rec.clamp(-1, 1) - x) / 2).pow(2).mean()
        psnr = -10 * torch.log10(mse.clamp_min(1e-10))
    return {"loss": l1 + kl_weight * kl, "l1": l1, "kl": kl, "psnr": psnr}


def train_vae(vae, crops: PhotoCrops, *, steps: int, batch: int, lr: float, kl_weight: float,
              out: Path, minutes: float = 0, log_every: int = 10, ckpt_every: int = 0,
              seed: int = 0) -> list[dict]:
    """Stage a (module docstring). Returns the logged rows (also in OUT/vae_log.csv)."""
    torch.manual_seed(seed)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    log = common.CsvLog(out / "vae_log.csv", VAE_COLUMNS)
    rows = []
    for step in _loop(steps, minutes, "VAE"):
        losses = vae_loss(vae, crops.batch(step, batch), kl_weight)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        row = {k: float(v.detach()) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in row.values()):
            raise RuntimeError(f"VAE loss not finite at step {step}: {row}")
        if step % log_every == 0 or step == 1:
            _log(log, rows, step, row)
        if ckpt_every and step % ckpt_every == 0:
            _checkpoint(out / "checkpoints" / f"vae-{step:06d}.pt", vae, opt, step)
    if rows[-1]["step"] != step:  # the last step (the time limit's) is always logged
        _log(log, rows, step, row)
    vae.eval()
    common.plot_curves(log.path, out / "vae_loss.png", VAE_COLUMNS, "small VAE (stage a)")
    return rows


@torch.no_grad()
def set_latent_scale(vae, crops: PhotoCrops, batches: int = 4, batch: int = 8,
                     first_step: int = 10**6) -> float:
    """Set ``vae.config.scaling_factor`` to 1 / std of the posterior means of
    ``batches`` batches of crops (steps from ``first_step``, apart from training's)."""
    vae.eval()
    means = [vae.encode(crops.batch(first_step + i, batch) * 2 - 1).latent_dist.mean
             for i in range(batches)]
    scale = 1.0 / float(torch.cat(means).std())
    vae.register_to_config(scaling_factor=scale)
    return scale


def unet_loss(unet, vae, alphas_cumprod: torch.Tensor, x: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """Stage b's loss: the epsilon-prediction DDPM loss on the scaled posterior means of
    images ``x`` in [0, 1], at t uniform in 0..T-1, zero text embedding."""
    with torch.no_grad():
        y0 = vae_latent(vae, x * 2 - 1)
    n = y0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (n,), generator=generator)
    eps = torch.randn(y0.shape, generator=generator)
    a = alphas_cumprod[t].view(n, 1, 1, 1)
    y_t = a.sqrt() * y0 + (1 - a).sqrt() * eps
    prompt = torch.zeros(n, PROMPT_LENGTH, unet.config.cross_attention_dim)
    return F.mse_loss(unet(y_t, t, encoder_hidden_states=prompt).sample, eps)


def train_unet(unet, vae, scheduler, crops: PhotoCrops, *, steps: int, batch: int, lr: float,
               out: Path, minutes: float = 0, log_every: int = 10, ckpt_every: int = 0,
               seed: int = 0) -> list[dict]:
    """Stage b (module docstring), the VAE frozen. Returns the logged rows (also in
    OUT/unet_log.csv)."""
    torch.manual_seed(seed)
    vae.requires_grad_(False).eval()
    unet.train()
    gen = torch.Generator().manual_seed(seed + 1)
    alphas = scheduler.alphas_cumprod.float()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    log = common.CsvLog(out / "unet_log.csv", UNET_COLUMNS)
    rows = []
    for step in _loop(steps, minutes, "UNet"):
        # crops apart from stage a's steps: the same photos, other windows
        loss = unet_loss(unet, vae, alphas, crops.batch(10**7 + step, batch), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"UNet loss not finite at step {step}")
        if step % log_every == 0 or step == 1:
            _log(log, rows, step, {"loss": value})
        if ckpt_every and step % ckpt_every == 0:
            _checkpoint(out / "checkpoints" / f"unet-{step:06d}.pt", unet, opt, step)
    if rows[-1]["step"] != step:  # the last step (the time limit's) is always logged
        _log(log, rows, step, {"loss": value})
    unet.eval()
    common.plot_curves(log.path, out / "unet_loss.png", UNET_COLUMNS,
                       "small latent UNet, epsilon MSE (stage b)")
    return rows


def _log(log: common.CsvLog, rows: list[dict], step: int, row: dict) -> None:
    log.write(step, **row)
    rows.append({"step": step, **row})


def _checkpoint(path: Path, model, opt, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict()}, tmp)
    tmp.replace(path)


def save_backbone(out: Path, vae=None, unet=None, scheduler=None) -> Path:
    """Write the given parts as ``OUT/vae``, ``OUT/unet``, ``OUT/scheduler`` (diffusers
    ``save_pretrained``, safetensors) and ``OUT/model_index.json``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("vae", vae), ("unet", unet), ("scheduler", scheduler)):
        if part is not None:
            part.save_pretrained(out / name)
    (out / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline",
         "_gencodec_note": "compact backbone from scripts/train_osdiff_backbone.py"}) + "\n")
    return out


# -- command line --------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python scripts/train_osdiff_backbone.py --train "
               "/work/data/photos/train --out /work/ckpt/osdiff-small/backbone \\\n"
               "      --crop 64 --vae-steps 300 --unet-steps 300 --minutes 15\n"
               "  then: gencodec train osdiff --backbone /work/ckpt/osdiff-small/backbone "
               "--train /work/data/photos/train --crop 128 --codec-config small.json "
               "--out RUN\n"
               "  only stage b on a trained VAE: add --stage unet (reads OUT/vae)")
    p.add_argument("--train", required=True, help="folder of training photos")
    p.add_argument("--out", required=True, help="backbone folder to write (outside the repo)")
    p.add_argument("--stage", choices=("all", "vae", "unet"), default="all",
                   help="all (default); vae: stage a only; unet: stage b on OUT/vae")
    p.add_argument("--crop", type=int, default=64, help="training crop side (default 64)")
    p.add_argument("--short-side", type=int, default=512,
                   help="box-downscale photos to this short side first (default 512)")
    p.add_argument("--vae-channels", type=_ints, default=(16, 32, 32, 64),
                   help="VAE widths per level, f = 2^(levels-1) (default 16,32,32,64: f=8)")
    p.add_argument("--unet-channels", type=_ints, default=(32, 64, 64),
                   help="UNet widths per level (default 32,64,64)")
    p.add_argument("--groups", type=int, default=8, help="GroupNorm groups (default 8)")
    p.add_argument("--cross-dim", type=int, default=16,
                   help="the UNet's cross-attention dim (zero embedding; default 16)")
    p.add_argument("--head-dim", type=int, default=16, help="attention head size (default 16)")
    p.add_argument("--vae-steps", type=int, default=300, help="stage a steps (default 300)")
    p.add_argument("--unet-steps", type=int, default=300, help="stage b steps (default 300)")
    p.add_argument("--batch", type=int, default=8, help="batch (default 8)")
    p.add_argument("--vae-lr", type=float, default=1e-3, help="stage a lr (default 1e-3)")
    p.add_argument("--unet-lr", type=float, default=5e-4, help="stage b lr (default 5e-4)")
    p.add_argument("--kl-weight", type=float, default=1e-4,
                   help="weight of the KL per latent element (default 1e-4)")
    p.add_argument("--minutes", type=float, default=0,
                   help="wall-time limit of each stage, 0: none (default 0)")
    p.add_argument("--log-every", type=int, default=10, help="steps between CSV rows")
    p.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--force", "-f", action="store_true",
                   help="overwrite the stage's parts already in OUT")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    try:
        if out.resolve().is_relative_to(ROOT):
            raise InputError(f"--out {out} is inside the repository; write checkpoints outside")
        stages = {"all": ("vae", "unet"), "vae": ("vae",), "unet": ("unet",)}[args.stage]
        for part in stages:
            if (out / part).exists() and not args.force:
                raise InputError(f"{out / part} exists (use --force to replace it)")
        if "vae" not in stages and not (out / "vae").is_dir():
            raise InputError(f"--stage unet needs a trained VAE in {out / 'vae'}")
        crops = PhotoCrops(args.train, args.crop, args.seed, args.short_side)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import diffusers

    common.seed_everything(args.seed, deterministic=False)
    out.mkdir(parents=True, exist_ok=True)
    if "vae" in stages:
        vae = build_vae(args.vae_channels, args.groups)
        print(f"VAE: {parameter_count(vae) / 1e6:.2f} M parameters", file=sys.stderr)
        t0 = time.monotonic()
        rows = train_vae(vae, crops, steps=args.vae_steps, batch=args.batch, lr=args.vae_lr,
                         kl_weight=args.kl_weight, out=out, minutes=args.minutes,
                         log_every=args.log_every, ckpt_every=args.ckpt_every, seed=args.seed)
        scale = set_latent_scale(vae, crops)
        save_backbone(out, vae=vae)
        print(f"VAE: {rows[-1]['step']} steps in {time.monotonic() - t0:.0f} s, last psnr "
              f"{rows[-1]['psnr']:.2f} dB, scaling_factor {scale:.4f}", file=sys.stderr)
    else:
        vae = diffusers.AutoencoderKL.from_pretrained(out / "vae")
    if "unet" in stages:
        unet = build_unet(args.unet_channels, args.groups, args.cross_dim, args.head_dim)
        sched = build_scheduler()
        print(f"UNet: {parameter_count(unet) / 1e6:.2f} M parameters", file=sys.stderr)
        t0 = time.monotonic()
        rows = train_unet(unet, vae, sched, crops, steps=args.unet_steps, batch=args.batch,
                          lr=args.unet_lr, out=out, minutes=args.minutes,
                          log_every=args.log_every, ckpt_every=args.ckpt_every, seed=args.seed)
        save_backbone(out, unet=unet, scheduler=sched)
        print(f"UNet: {rows[-1]['step']} steps in {time.monotonic() - t0:.0f} s, last loss "
              f"{rows[-1]['loss']:.4f}", file=sys.stderr)
    print(f"backbone: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
