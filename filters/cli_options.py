"""Command-line options shared by the filter sub-commands (transcode, preprocess, pipe,
export): the model and how it runs."""

from __future__ import annotations

import argparse

from gencodec.errors import InputError
from gencodec.models import DEFAULT_PREPROCESSOR, NoDefaultModel, default_preprocessor_path


#: The ``--model`` value that means "no preprocessing" where a command allows it
#: (transcode: plain encoding); a model directory of that name is ``./none``.
NO_MODEL = "none"


def add_model_argument(p: argparse.ArgumentParser, *aliases: str,
                       allow_none: bool = False) -> None:
    none = (f"; '{NO_MODEL}': no preprocessing, the stock encoder alone (a directory of "
            f"that name: ./{NO_MODEL})") if allow_none else ""
    p.add_argument("--model", "-m", *aliases, dest="model", metavar="ID|DIR",
                   help="preprocessing model: a directory made by save_pretrained, a "
                        "diffusers one-step model with prompt_embeds.safetensors, a registry "
                        "id or a hub id (default: the embedded default model, "
                        f"{DEFAULT_PREPROCESSOR}, its sha256 checked){none}")


def add_runner_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference")
    g.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="PyTorch or ONNX Runtime (default: torch)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="default: cpu")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="fp16/bf16 on CUDA with the torch back end (default: fp32)")
    g.add_argument("--tile", type=int, default=None,
                   help="tile side in pixels; bounds memory (default: frames up to 2048 "
                        "pixels whole for local models such as the compact one, 512 for "
                        "models with global operations)")
    g.add_argument("--overlap", type=int, default=None,
                   help="tile overlap in pixels (default: 4x the receptive field, or "
                        "128, at most half the tile)")
    g.add_argument("--batch", type=int, default=4,
                   help="tiles per model call; video frames are also filtered this many at "
                        "a time (default: 4)")


def require_model(args, allow_none: bool = False) -> str:
    """The --model value, or without one the folder of the embedded default model (its
    sha256 checked against the registry); refused before any work when no default is
    installed, or ``none`` where the command needs a model (what it names is checked
    when it loads)."""
    if not getattr(args, "model", None):
        try:
            return str(default_preprocessor_path())
        except NoDefaultModel as exc:
            raise InputError(str(exc) + (f", or --model {NO_MODEL} to encode without "
                                         "preprocessing" if allow_none else "")) from None
    if args.model == NO_MODEL and not allow_none:
        raise InputError(f"--model {NO_MODEL}: this command needs a preprocessing model "
                         f"(a directory named {NO_MODEL}: ./{NO_MODEL})")
    return args.model


def runner_from_args(args):
    from gencodec.filters import make_runner

    return make_runner(require_model(args), backend=args.backend, device=args.device,
                       precision=args.precision, tile=args.tile, overlap=args.overlap,
                       batch=args.batch)
