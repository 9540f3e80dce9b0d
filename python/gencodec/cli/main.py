"""Entry point of the ``gencodec`` command.

Errors a user can cause are printed as one line, ``gencodec: error: ...``, with exit
code 2 and no traceback (``--debug``, before or after the command name, shows it).
SIGTERM (a batch scheduler stopping a job) unwinds like Ctrl-C, so no temporary file
is left behind; the exit code is then 143 (130 for Ctrl-C)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings

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
    "train_cmd",
    "batch_cmd",
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
    for command in _command_parsers(sub):  # ``gencodec encode ... --debug`` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def _command_parsers(sub):
    """Every command's parser, those of nested commands (``diffc calibrate``) included."""
    for command in sub.choices.values():
        yield command
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from _command_parsers(action)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that ``finally`` clauses (temporary
    outputs) run before the process ends."""


@contextlib.contextmanager
def _sigterm_unwinds():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Library warnings (Pillow's "Corrupt EXIF data", ...) as one line in the
    command's voice, not two lines pointing into site-packages."""
    text = " ".join(str(message).split())
    return f"gencodec: warning: {text}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = _one_line_warning
    # File names that are not valid UTF-8 reach Python as surrogate escapes; print
    # them back as the original bytes instead of failing after the work is done.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (``gencodec info s.gnc | head -1``): end quietly, as
        # Unix tools do on SIGPIPE, and keep Python's exit-time flush from complaining
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except MemoryError:
        if args.debug:
            traceback.print_exc()
        print("gencodec: error: out of memory (a smaller image, or a lower "
              "GENCODEC_MAX_PIXELS, keeps within it)", file=sys.stderr)
        return 2
    except (GencodecError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"gencodec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gencodec: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("gencodec: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
