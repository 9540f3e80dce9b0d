"""``gencodec train``: the training commands, one sub-command per trainer.

Each trainer is a module ``gencodec.cli.train_<name>`` with a ``register(sub)`` that adds
its parser to the ``train`` group (as the top-level commands do in :mod:`.main`):
``rp`` (rate-perception fine-tuning through a codec surrogate), ``distill`` (CiD
one-step distillation), ``osdiff`` (the OSDiff codec)."""

from __future__ import annotations

import importlib

#: Trainer modules under gencodec.cli, in the order ``gencodec train --help`` lists them.
TRAINERS: tuple[str, ...] = ("train_rp", "train_distill", "train_osdiff")


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train models: rate-perception fine-tuning, distillation, OSDiff",
        description="Training commands. Each writes checkpoints it can resume from, a CSV "
                    "log and a loss plot, and a model folder the other commands load.",
        epilog="Run 'gencodec train TRAINER --help' for the options of a trainer.")
    trainers = p.add_subparsers(dest="trainer", metavar="TRAINER", required=True)
    for name in TRAINERS:
        module = importlib.import_module(f"gencodec.cli.{name}")
        module.register(trainers)
    # --debug is added to every trainer by main.build_parser (it walks nested commands)


def add_run_arguments(group, defaults) -> None:
    """The options every trainer's run takes (device, precision, logging, checkpoints,
    resume), defaulting to ``defaults``' fields of the same names."""
    group.add_argument("--device", default=defaults.device,
                       help="auto (a GPU per process when present), cpu or cuda")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                       default=defaults.precision,
                       help="CUDA autocast (auto: bf16 where supported); the CPU always "
                            "runs fp32")
    group.add_argument("--log-every", type=int, default=defaults.log_every,
                       help=f"steps between CSV rows (default {defaults.log_every})")
    group.add_argument("--ckpt-every", type=int, default=defaults.ckpt_every,
                       help=f"steps between checkpoints (default {defaults.ckpt_every})")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in OUT/checkpoints")
    group.add_argument("--force", "-f", action="store_true",
                       help="start again even though OUT/checkpoints holds checkpoints")
