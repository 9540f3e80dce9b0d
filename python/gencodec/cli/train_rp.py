"""``gencodec train rp``: rate-perception fine-tuning through a codec surrogate
(:mod:`gencodec.train.rp`)."""

from __future__ import annotations

from gencodec.cli.train_cmd import add_run_arguments
from gencodec.train.rp_config import VAL_METRICS, RPConfig

_D = RPConfig("", "")


def register(sub) -> None:
    p = sub.add_parser(
        "rp", help="rate-perception fine-tuning of a preprocessing model (Guo et al. Eq. 6)",
        description="Fine-tune a preprocessing model so that a stock codec spends fewer bits "
                    "at the same perceived quality: loss L1 + w_p * perceptual + lambda(QP) "
                    "* bpp through the codec's differentiable surrogate (diff-BPG or "
                    "diff-JPEG), lambda(QP) = exp(-0.115 QP + 1.145), QP ~ U[10, 50] per "
                    "step. One-step diffusion models train only their UNet attention Q/K/V "
                    "(or LoRA on them); the compact model trains all weights. Training "
                    "patches: random 256x256 patches of the --train photos with a JND score "
                    "above 0.8. Writes OUT/checkpoints, OUT/log.csv, OUT/loss.png and the "
                    "model folder OUT/model. Several GPUs: launch with torchrun.",
        epilog="example: gencodec train rp --train photos/train --val photos/val --codec bpg "
               "--channels 16 --blocks 2 --scale 4 --steps 3000 --out runs/rp; continue "
               "with the same command plus --resume; on 4 GPUs: torchrun --nproc-per-node 4 "
               "-m gencodec.cli.main train rp ...")
    g = p.add_argument_group("data")
    g.add_argument("--train", required=True, help="folder of training photos")
    g.add_argument("--val", help="folder of held-out photos for the validation BD-rate")
    g.add_argument("--out", required=True, help="output folder (checkpoints, logs, model)")
    g.add_argument("--patch", type=int, default=_D.patch,
                   help=f"side of the JND-scored patches (default {_D.patch})")
    g.add_argument("--crop", type=int, default=_D.crop,
                   help=f"side of the training crops drawn inside patches (default {_D.crop})")
    g.add_argument("--jnd-threshold", type=float, default=_D.jnd_threshold,
                   help="keep patches whose normalised JND score exceeds this (default 0.8)")
    g.add_argument("--candidates", type=int, default=_D.candidates_per_image,
                   help=f"random patches scored per photo (default {_D.candidates_per_image})")
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", help="frame model to fine-tune: folder, registry id or "
                   "hub id (default: a new compact network from --channels/--blocks/--scale)")
    g.add_argument("--channels", type=int, default=_D.channels,
                   help=f"new compact model: channels (default {_D.channels})")
    g.add_argument("--blocks", type=int, default=_D.blocks,
                   help=f"new compact model: residual blocks (default {_D.blocks})")
    g.add_argument("--scale", type=int, default=_D.scale,
                   help=f"new compact model: pixel-unshuffle factor (default {_D.scale})")
    g.add_argument("--keep-means", type=int, default=_D.keep_means, metavar="K",
                   help="new compact model: keep every KxK block mean of the frame, change only "
                        "the detail inside the blocks (2: what GMSD and HaarPSI, which pool "
                        "2x2, see stays as it is; default 1: off)")
    g.add_argument("--chroma-sigma", type=float, default=_D.chroma_sigma, metavar="PIXELS",
                   help="new compact model: blur the output's chroma with a Gaussian of this "
                        "many pixels, its luma (BT.601 Y) kept as it is (default 0: off)")
    g.add_argument("--lora", type=int, default=0, metavar="RANK",
                   help="one-step models: train LoRA adapters of this rank on the attention "
                        "Q/K/V instead of the projections themselves (needs peft)")
    g = p.add_argument_group("loss and optimiser")
    g.add_argument("--codec", choices=("bpg", "jpeg"), default=_D.codec,
                   help="surrogate to train through, and codec of the validation (default bpg)")
    g.add_argument("--quality-range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="range the per-step QP (bpg, default 10 50) or JPEG quality (jpeg, "
                        "default 10 90) is drawn from")
    g.add_argument("--w-p", type=float, default=_D.w_p,
                   help=f"weight of the perceptual term (default {_D.w_p:g})")
    g.add_argument("--rate-scale", type=float, default=_D.rate_scale,
                   help="factor on lambda(QP) (default 1: the paper's schedule)")
    g.add_argument("--distortion-pool", type=int, default=_D.distortion_pool, metavar="K",
                   help="compare images after KxK average pooling in L1 and the perceptual "
                        "term (a viewer farther away; 2: the distance GMSD and HaarPSI "
                        "assume); default 1: full resolution")
    g.add_argument("--terms", type=int, default=_D.terms,
                   help=f"Fourier terms of the surrogate's rounding (default {_D.terms}: "
                        "more make the distortion's gradient spikier; see "
                        "gencodec.train.rp_config.TRAIN_TERMS)")
    g.add_argument("--perceptual", choices=("auto", "dists", "dss"), default=_D.perceptual,
                   help="perceptual loss: DISTS when its weights are found (auto), else DSS")
    g.add_argument("--weights-dir", help="folder with the DISTS weight files")
    g.add_argument("--steps", type=int, default=_D.steps, help=f"steps (default {_D.steps})")
    g.add_argument("--batch", type=int, default=_D.batch,
                   help=f"global batch, split over torchrun processes (default {_D.batch})")
    g.add_argument("--lr", type=float, default=_D.lr, help="initial Adam lr (default 1e-3)")
    g.add_argument("--lr-min", type=float, default=_D.lr_min,
                   help="final lr of the cosine decay (default 1e-8)")
    g.add_argument("--warmup", type=int, default=_D.warmup,
                   help="linear warm-up steps before the cosine decay (default 0, as the "
                        "paper; a new compact model trains better with a few hundred)")
    g.add_argument("--seed", type=int, default=_D.seed, help="seed (default 0)")
    g = p.add_argument_group("run")
    add_run_arguments(g, _D)
    g.add_argument("--val-every", type=int, default=_D.val_every,
                   help=f"steps between validation BD-rates (default {_D.val_every})")
    g.add_argument("--val-side", type=int, default=_D.val_side,
                   help=f"validation centre-crop side (default {_D.val_side})")
    g.add_argument("--val-metrics", default=",".join(VAL_METRICS),
                   help=f"weight-free metrics of the validation BD-rate "
                        f"(default {','.join(VAL_METRICS)})")
    p.set_defaults(func=run)


def run(args) -> int:
    from gencodec.train.rp import train

    lo, hi = args.quality_range or (None, None)
    cfg = RPConfig(
        train=args.train, out=args.out, val=args.val, codec=args.codec, model=args.model,
        channels=args.channels, blocks=args.blocks, scale=args.scale,
        keep_means=args.keep_means, chroma_sigma=args.chroma_sigma, lora_rank=args.lora,
        steps=args.steps, batch=args.batch, crop=args.crop, patch=args.patch,
        jnd_threshold=args.jnd_threshold, candidates_per_image=args.candidates, lr=args.lr,
        lr_min=args.lr_min, warmup=args.warmup, w_p=args.w_p, rate_scale=args.rate_scale,
        distortion_pool=args.distortion_pool,
        terms=args.terms,
        quality_lo=lo, quality_hi=hi, perceptual=args.perceptual, weights_dir=args.weights_dir,
        seed=args.seed, log_every=args.log_every, ckpt_every=args.ckpt_every,
        val_every=args.val_every, val_side=args.val_side,
        val_metrics=tuple(m for m in args.val_metrics.split(",") if m),
        device=args.device, precision=args.precision, resume=args.resume, force=args.force)
    model_dir = train(cfg)
    print(f"{model_dir}: trained model ({cfg.steps} steps); log {args.out}/log.csv, "
          f"plot {args.out}/loss.png")
    return 0
