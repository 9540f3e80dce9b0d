"""``gencodec train distill``: one-step CiD distillation of a diffusion teacher
(:mod:`gencodec.train.distill`)."""

from __future__ import annotations

from gencodec.cli.train_cmd import add_run_arguments
from gencodec.train.distill_config import ANCHORS, WEIGHTINGS, CiDConfig, DistillConfig

_C = CiDConfig()
_D = DistillConfig("", "", "")


def register(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a diffusion model into a one-step preprocessing model (CiD)",
        description="Consistent Score identity Distillation (Guo et al. Eqs. 2-3; GenDR; SiD). "
                    "Three copies of the teacher's UNet: the frozen teacher f_phi, the fake "
                    "score network f_psi (denoising loss on the student's detached outputs) "
                    "and the one-step student G(z_h) = f_theta(z_h, t_init), whose input is "
                    "the VAE latent z_h of a training crop. The student minimises "
                    "L_cid = L_id - xi L_score with L_id = E[w(t) <f_phi - f_psi, f_phi - "
                    "anchor>] and L_score = E[w(t) ||f_phi - f_psi||^2] at z_t = a_t G(z_h) "
                    "+ s_t eps. The teacher is a diffusers repository (unet/, vae/, "
                    "scheduler/) with the static text embedding prompt_embeds.safetensors "
                    "(gencodec.filters.onestep.write_static_embedding), as the filter loads "
                    "it. Writes OUT/checkpoints, OUT/log.csv, OUT/loss.png and OUT/model (the "
                    "EMA student), which 'gencodec preprocess --model' loads and 'gencodec "
                    "train rp --model' fine-tunes. Several GPUs: launch with torchrun.",
        epilog="example: gencodec train distill --teacher sd21-static --train photos/train "
               "--out runs/cid --size 512 --batch 4 --steps 20000 --gradient-checkpointing; "
               "continue with the same command plus --resume; on 8 GPUs: torchrun "
               "--nproc-per-node 8 -m gencodec.cli.main train distill ... --batch 32")
    g = p.add_argument_group("data and models")
    g.add_argument("--teacher", required=True,
                   help="diffusers repository (folder or hub id) with prompt_embeds.safetensors")
    g.add_argument("--train", required=True, help="folder of training photos (at least "
                   "--size pixels a side)")
    g.add_argument("--out", required=True, help="output folder (checkpoints, logs, model)")
    g.add_argument("--size", type=int, default=_D.size,
                   help=f"side of the random training crops (default {_D.size})")
    g = p.add_argument_group("CiD (sources in gencodec.train.cid_loss)")
    g.add_argument("--t-init", type=int, default=_C.t_init,
                   help=f"the student's fixed timestep (default {_C.t_init}, SiD-LSG)")
    g.add_argument("--t-min", type=int, default=_C.t_min,
                   help=f"smallest noise timestep of the losses (default {_C.t_min}, SiD-LSG)")
    g.add_argument("--t-max", type=int, default=_C.t_max,
                   help=f"timesteps are drawn below this (default {_C.t_max}, SiD-LSG)")
    g.add_argument("--xi", type=float, default=_C.xi,
                   help=f"weight of L_score in Eq. 3 (default {_C.xi:g}: SiD-LSG's alpha)")
    g.add_argument("--anchor", choices=ANCHORS, default=_C.anchor,
                   help="anchor of L_id: 'input' (z_h, the paper's Eq. 2; the default) or "
                        "'student' (z_g: SiD's loss L2 - alpha L1)")
    g.add_argument("--weighting", choices=WEIGHTINGS, default=_C.weighting,
                   help="w(t): 'sid' (1 / mean|anchor - f_phi|, the default) or 'none'")
    g.add_argument("--fake-steps", type=int, default=_C.fake_steps,
                   help=f"fake-score updates per student update (default {_C.fake_steps}, SiD)")
    g = p.add_argument_group("optimiser")
    g.add_argument("--steps", type=int, default=_D.steps, help=f"student updates (default {_D.steps})")
    g.add_argument("--batch", type=int, default=_C.global_batch,
                   help=f"global batch, split over torchrun processes (default {_C.global_batch})")
    g.add_argument("--lr", type=float, default=_C.lr_student,
                   help="student Adam lr (default 1e-5, the paper's fixed rate)")
    g.add_argument("--lr-fake", type=float, default=_C.lr_fake,
                   help="fake score network Adam lr (default 1e-5)")
    g.add_argument("--adam-beta1", type=float, default=_C.adam_beta1,
                   help="Adam beta1 of both networks (default 0, SiD)")
    g.add_argument("--adam-eps", type=float, default=_C.adam_eps,
                   help="Adam epsilon of both networks (default 1e-8, SiD)")
    g.add_argument("--grad-clip", type=float, default=_C.grad_clip,
                   help="clip gradient norms to this (default 0: off)")
    g.add_argument("--ema-halflife-kimg", type=float, default=_C.ema_halflife_kimg,
                   help="half-life of the student EMA in thousands of images "
                        f"(default {_C.ema_halflife_kimg:g}, SiD-LSG), ramped up as 5%% of "
                        "the images seen")
    g.add_argument("--seed", type=int, default=_C.seed, help="seed (default 0)")
    g = p.add_argument_group("run")
    add_run_arguments(g, _D)
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute UNet activations in the backward pass (less memory)")
    p.set_defaults(func=run)


def config_from_args(args) -> DistillConfig:
    cid = CiDConfig(t_init=args.t_init, t_min=args.t_min, t_max=args.t_max, xi=args.xi,
                    anchor=args.anchor, weighting=args.weighting, fake_steps=args.fake_steps,
                    lr_student=args.lr, lr_fake=args.lr_fake, adam_beta1=args.adam_beta1,
                    adam_eps=args.adam_eps,
                    grad_clip=args.grad_clip, ema_halflife_kimg=args.ema_halflife_kimg,
                    global_batch=args.batch, seed=args.seed)
    return DistillConfig(teacher=args.teacher, train=args.train, out=args.out, cid=cid,
                         size=args.size, steps=args.steps,
                         gradient_checkpointing=args.gradient_checkpointing,
                         device=args.device, precision=args.precision,
                         log_every=args.log_every, ckpt_every=args.ckpt_every,
                         resume=args.resume, force=args.force)


def run(args) -> int:
    from gencodec.train.distill import train

    cfg = config_from_args(args)
    model_dir = train(cfg)
    print(f"{model_dir}: one-step student ({cfg.steps} steps); log {args.out}/log.csv, "
          f"plot {args.out}/loss.png")
    return 0
