"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import os
import sys

from gencodec.errors import InputError
from gencodec.imageio import is_stdout


def parse_codec_options(pairs: list[str] | None) -> dict[str, object]:
    """``["subsampling=444", "method=4", "speed=fast"]`` ->
    ``{"subsampling": 444, "method": 4, "speed": "fast"}``: values that read as integers
    become ints, the rest stay strings (codecs normalise, e.g. ``subsampling=444``)."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"codec option {pair!r} is not KEY=VALUE")
        parsed: object = value
        if value.isascii() and "_" not in value:
            try:
                parsed = int(value)
            except ValueError:
                pass
        options[key.replace("-", "_")] = parsed
    return options


def add_codec_arguments(p: argparse.ArgumentParser, *, codec_required: bool = True,
                        option_help: str = "codec option, e.g. -O subsampling=444 for jpeg "
                                           "(repeatable; 'gencodec codecs' lists each "
                                           "codec's options)") -> None:
    if codec_required:
        p.add_argument("--codec", "-c", required=True,
                       help="codec name (see 'gencodec codecs')")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help=option_help)
    p.add_argument("--model", "-m", metavar="ID|DIR",
                   help="model for generative codecs (registry id or local directory)")


def codec_options(args) -> dict[str, object]:
    """The codec constructor options from ``--option`` and ``--model``."""
    options = parse_codec_options(args.option)
    if getattr(args, "model", None):
        options["model"] = args.model
    return options


def add_force_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", "-f", action="store_true", help="overwrite an existing output")


def print_result(line: str, output: str | os.PathLike) -> None:
    """Print a command's one-line summary: on stdout, or on stderr when the output
    itself goes to stdout (``-o -``, ``-o /dev/stdout | ...``), which the line would
    corrupt."""
    print(line, file=sys.stderr if is_stdout(output) else sys.stdout)


def note(text: str) -> None:
    """A one-line note on stderr, in the command's voice."""
    print(f"gencodec: note: {text}", file=sys.stderr)
