"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse

from gencodec.errors import InputError


def parse_codec_options(pairs: list[str] | None) -> dict[str, object]:
    """``["subsampling=444", "method=4"]`` -> ``{"subsampling": "444", "method": 4}``."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"codec option {pair!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = int(value) if value.lstrip("-").isdigit() else value
    return options


def add_codec_arguments(p: argparse.ArgumentParser, *, codec_required: bool = True) -> None:
    if codec_required:
        p.add_argument("--codec", "-c", required=True,
                       help="codec name (see 'gencodec codecs')")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="codec option, e.g. -O subsampling=444 (repeatable)")
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
