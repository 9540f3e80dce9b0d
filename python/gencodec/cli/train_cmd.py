"""``gencodec train``: the training commands, one sub-command per trainer.

Each trainer is a module ``gencodec.cli.train_<name>`` with a ``register(sub)`` that adds
its parser to the ``train`` group (as the top-level commands do in :mod:`.main`):
``rp`` (rate-perception fine-tuning through a codec surrogate), ``distill`` (CiD
one-step distillation), ``osdiff`` (the OSDiff codec)."""

from __future__ import annotations

import importlib

#: Trainer modules under gencodec.cli, in the order ``gencodec train --help`` lists them.
TRAINERS: tuple[str, ...] = ("train_rp", "train_distill")


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
