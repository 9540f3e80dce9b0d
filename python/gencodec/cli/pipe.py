"""``gencodec pipe``: rawvideo frames on stdin -> preprocessing -> stdout."""

from __future__ import annotations

import os
import signal
import sys

from gencodec.errors import InputError
from gencodec.filters.cli_options import add_model_argument, add_runner_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "pipe", help="filter rawvideo frames from stdin to stdout (FFmpeg pipelines)",
        description="Read packed rawvideo frames of --size and --pix-fmt on stdin, run the "
                    "preprocessing model, write frames of the same format on stdout.",
        epilog="example: ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - | gencodec pipe "
               "--size 1280x720 --model DIR | ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 "
               "-i - -c:v libx265 out.mp4")
    p.add_argument("--size", "-s", required=True, metavar="WxH", help="frame size, e.g. 1280x720")
    p.add_argument("--pix-fmt", choices=("rgb24", "yuv420p"), default="rgb24",
                   help="rawvideo pixel format in and out (default: rgb24)")
    p.add_argument("--progress", action="store_true",
                   help="progress and fps on stderr, when it is a terminal")
    add_model_argument(p)
    add_runner_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from gencodec.filters.cli_options import runner_from_args
    from gencodec.filters.pipe import DownstreamClosed, RawFormat, parse_size, run_pipe

    fmt = RawFormat(*parse_size(args.size), args.pix_fmt)
    # binary frames from or to a terminal: a forgotten pipe (it would wait for typed
    # input, or print raw bytes); refused before the model loads
    if sys.stdin.isatty():
        raise InputError("stdin is a terminal: pipe rawvideo frames in, e.g. ffmpeg -i IN "
                         "-f rawvideo -pix_fmt rgb24 - | gencodec pipe ...")
    if sys.stdout.isatty():
        raise InputError("stdout is a terminal: pipe the frames on, e.g. gencodec pipe ... "
                         "| ffmpeg -f rawvideo ..., or redirect them to a file")
    runner = runner_from_args(args)
    # disable=None: on a terminal only, never into a redirected log
    bar = tqdm(unit="frame", desc="pipe", file=sys.stderr, disable=None) \
        if args.progress else None
    try:
        n = run_pipe(sys.stdin.buffer, sys.stdout.buffer, fmt, runner, batch=args.batch,
                     progress=bar)
    except DownstreamClosed as exc:
        # Nothing more can be written: point stdout at /dev/null so that the
        # interpreter's final flush does not raise BrokenPipeError again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"gencodec pipe: {exc}; stopping", file=sys.stderr)
        return 128 + signal.SIGPIPE  # what a Unix filter killed by SIGPIPE reports
    finally:
        if bar is not None:
            bar.close()
    print(f"gencodec pipe: {n} frames", file=sys.stderr)
    return 0
