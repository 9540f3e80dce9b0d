"""``gencodec train osdiff``: training of the OSDiff codec (:mod:`gencodec.train.osdiff`)."""

from __future__ import annotations

from gencodec.cli.train_cmd import add_run_arguments
from gencodec.train.osdiff_config import OPTIMIZERS, OSDiffTrainConfig

_D = OSDiffTrainConfig("", "")


def register(sub) -> None:
    p = sub.add_parser(
        "osdiff", help="train the OSDiff codec (learned latent codec + one-step diffusion "
                       "decoder, Jia et al. Eq. 13)",
        description="Train the OSDiff codec: G_a, G_s, the hyperprior entropy model and the "
                    "control branch of the one-step decoder on lambda_1 ||y0 - y_r||^2 + "
                    "lambda_2 * bpp + lambda_3 ||y0 - y_c||^2 + lambda_4 * GAN, alternating "
                    "with updates of a discriminator on the frozen UNet's input- and "
                    "middle-block features of latents re-noised to a random t (Eq. 14), and "
                    "with the entropy model's auxiliary (quantile) loss. The SD VAE and UNet "
                    "stay frozen. Training images: random crops of the --train photos. "
                    "Writes OUT/checkpoints, OUT/log.csv, OUT/loss.png and the model folder "
                    "OUT/model (a rate model: copy it to BACKBONE/osdiff/qN for 'gencodec encode "
                    "--codec osdiff'). Several GPUs: launch with torchrun.",
        epilog="example: gencodec train osdiff --train photos/train --backbone "
               "stabilityai/stable-diffusion-2-1-base --lambda-rate 2 --crop 512 --batch 4 "
               "--steps 100000 --out runs/osdiff-q1; continue with the same command plus "
               "--resume; on 4 GPUs: torchrun --nproc-per-node 4 -m gencodec.cli.main train "
               "osdiff ...")
    g = p.add_argument_group("data")
    g.add_argument("--train", required=True, help="folder of training photos")
    g.add_argument("--out", required=True, help="output folder (checkpoints, logs, model)")
    g.add_argument("--crop", type=int, default=_D.crop,
                   help=f"side of the random training crops (default {_D.crop}, the paper's)")
    g.add_argument("--short-side", type=int, default=_D.short_side,
                   help="box-downscale photos to this short side before cropping (default 0: "
                        "full size)")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", required=True, help="the frozen VAE and UNet: a Stable "
                   "Diffusion folder (unet/, vae/, scheduler/) or hub id")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--init", help="a rate model folder (OUT/model of an earlier run) to start "
                   "from")
    m.add_argument("--codec-config", help="JSON file of OSDiffConfig fields for new weights "
                   "(default: the public model's sizes)")
    g = p.add_argument_group("loss and optimiser")
    g.add_argument("--lambda-rate", type=float, default=_D.lambda_rate,
                   help="lambda_2, the rate weight: sets the bitrate (paper: 1 or 2; "
                        "default %(default)g)")
    g.add_argument("--lambda-diff", type=float, default=_D.lambda_diff,
                   help="lambda_1 on ||y0 - y_r||^2 (default %(default)g, the paper's)")
    g.add_argument("--lambda-feature", type=float, default=_D.lambda_feature,
                   help="lambda_3 on ||y0 - y_c||^2 (default %(default)g, the paper's)")
    g.add_argument("--lambda-gan", type=float, default=_D.lambda_gan,
                   help="lambda_4 on the GAN generator loss (default %(default)g, the paper's)")
    g.add_argument("--steps", type=int, default=_D.steps, help="steps (default %(default)d)")
    g.add_argument("--batch", type=int, default=_D.batch,
                   help="global batch, split over torchrun processes (default %(default)d)")
    g.add_argument("--lr", type=float, default=_D.lr,
                   help="AdamW lr of the codec and control branch (default %(default)g)")
    g.add_argument("--lr-disc", type=float, default=_D.lr_disc,
                   help="AdamW lr of the discriminator (default %(default)g)")
    g.add_argument("--lr-aux", type=float, default=_D.lr_aux,
                   help="AdamW lr of the entropy model's quantiles (default %(default)g)")
    g.add_argument("--grad-clip", type=float, default=_D.grad_clip,
                   help="max gradient norm of each update, 0: off (default %(default)g)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=_D.optimizer,
                   help="auto: 8-bit AdamW (bitsandbytes) on CUDA when installed, else AdamW")
    g.add_argument("--disc-hidden", type=int, default=_D.disc_hidden,
                   help="width of the discriminator's heads (default %(default)d)")
    g.add_argument("--disc-t-range", nargs=2, type=int, metavar=("MIN", "MAX"),
                   default=(_D.disc_t_min, _D.disc_t_max),
                   help="the discriminator's timesteps t ~ U{MIN .. MAX-1} (default 0 1000)")
    g.add_argument("--seed", type=int, default=_D.seed, help="seed (default 0)")
    g = p.add_argument_group("run")
    add_run_arguments(g, _D)
    p.set_defaults(func=run)


def run(args) -> int:
    from gencodec.train.osdiff import train

    cfg = OSDiffTrainConfig(
        train=args.train, out=args.out, backbone=args.backbone, init=args.init,
        codec_config=args.codec_config,
        lambda_rate=args.lambda_rate, lambda_diff=args.lambda_diff,
        lambda_feature=args.lambda_feature, lambda_gan=args.lambda_gan, steps=args.steps,
        batch=args.batch, crop=args.crop, short_side=args.short_side, lr=args.lr,
        lr_disc=args.lr_disc, lr_aux=args.lr_aux, grad_clip=args.grad_clip,
        optimizer=args.optimizer, disc_t_min=args.disc_t_range[0],
        disc_t_max=args.disc_t_range[1], disc_hidden=args.disc_hidden, seed=args.seed,
        log_every=args.log_every, ckpt_every=args.ckpt_every, device=args.device,
        precision=args.precision, resume=args.resume, force=args.force)
    model_dir = train(cfg)
    print(f"{model_dir}: trained model ({cfg.steps} steps); log {args.out}/log.csv, "
          f"plot {args.out}/loss.png")
    return 0
