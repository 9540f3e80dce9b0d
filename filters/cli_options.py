"""Command-line options shared by the filter sub-commands (transcode, preprocess, pipe,
export): the model and how it runs."""

from __future__ import annotations

import argparse

from gencodec.errors import InputError


def add_model_argument(p: argparse.ArgumentParser, *aliases: str) -> None:
    p.add_argument("--model", "-m", *aliases, dest="model", metavar="ID|DIR",
                   help="preprocessing model: a directory made by save_pretrained, a "
                        "diffusers one-step model with prompt_embeds.safetensors, or a hub "
                        "id (required: no trained default ships yet)")


def add_runner_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference")
    g.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="PyTorch or ONNX Runtime (default: torch)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="default: cpu")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="fp16/bf16 on CUDA with the torch back end (default: fp32)")
    g.add_argument("--tile", type=int, default=512,
                   help="tile side in pixels; bounds memory (default: 512)")
    g.add_argument("--overlap", type=int, default=None,
                   help="tile overlap in pixels (default: 4x the receptive field, or 128)")
    g.add_argument("--batch", type=int, default=4,
                   help="tiles per model call; video frames are also filtered this many at "
                        "a time (default: 4)")


def require_model(args) -> str:
    if not getattr(args, "model", None):
        from gencodec.filters.model import NO_MODEL_MESSAGE  # imports torch: only here

        raise InputError(NO_MODEL_MESSAGE)
    return args.model


def runner_from_args(args):
    from gencodec.filters import make_runner

    return make_runner(require_model(args), backend=args.backend, device=args.device,
                       precision=args.precision, tile=args.tile, overlap=args.overlap,
                       batch=args.batch)
