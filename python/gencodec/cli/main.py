"""Entry point of the ``gencodec`` command.

Errors a user can cause are printed as one line, ``gencodec: error: ...``, with exit
code 2 and no traceback (``--debug`` shows it)."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from gencodec import __version__
from gencodec.errors import GencodecError

#: Sub-command modules under gencodec.cli, in the order ``--help`` lists them.
COMMANDS = (
    "codecs_cmd",
    "encode",
    "decode",
    "info",
    "demo",
    "eval_cmd",
    "report",
    "diffc_cmd",
    "transcode",
    "preprocess",
    "pipe",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gencodec",
        description="Pretrained diffusion models in media pipelines: stock codecs, "
                    "generative preprocessing, DiffC and OSDiff.",
        epilog="Run 'gencodec COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"gencodec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"gencodec.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (GencodecError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"gencodec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gencodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
