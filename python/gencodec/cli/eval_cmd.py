"""``gencodec eval``: rate-distortion-perception runs with BD-rate tables.

Every image x preprocessor x codec x quality is encoded, decoded and measured; results
go to a folder (CompressAI-style JSON per configuration, a CSV of every point, R-D
plots, BD-rate tables) and a rerun resumes where an interrupted one stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gencodec.cli.options import parse_codec_options
from gencodec.codecs_ext import CODECS, check_options
from gencodec.codecs_ext.diffc import RD_TIMESTEPS
from gencodec.errors import InputError
from gencodec.eval.bdrate import METHODS
from gencodec.eval.images import find_images
from gencodec.eval.metrics import METRICS, WEIGHT_FREE
from gencodec.eval.runner import (DEFAULT_QUALITIES, NONE, build_codecs, evaluate,
                                  parse_qualities)
from gencodec.eval.summary import summarize


def _list(text: str) -> list[str]:
    """``"jpeg, webp,jpeg"`` -> ``["jpeg", "webp"]``: a name given twice counts once."""
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def parse_per_codec_options(items: list[str] | None, codecs: list[str]) -> dict[str, dict]:
    """``["osdiff:model=./sd21", "jpeg:subsampling=444"]`` -> ``{"osdiff": {"model":
    "./sd21"}, "jpeg": {"subsampling": 444}}``, each codec in ``codecs`` and each option
    one it takes."""
    options: dict[str, dict] = {}
    for item in items or []:
        codec, sep, pair = item.partition(":")
        codec = codec.strip()
        if not sep or not codec or "=" in codec:
            raise InputError(f"--codec-option {item!r} is not CODEC:KEY=VALUE")
        if codec not in codecs:
            raise InputError(f"--codec-option {item!r}: {codec} is not in --codecs")
        options.setdefault(codec, {}).update(parse_codec_options([pair]))
    for codec, opts in options.items():
        check_options(codec, opts)
    return options


def register(sub) -> None:
    defaults = "; ".join(f"{c}={','.join(map(str, q))}" for c, q in DEFAULT_QUALITIES.items())
    defaults += (f"; diffc=the steps whose x_t first reaches t <= "
                 f"{','.join(map(str, RD_TIMESTEPS))} in its profile")
    p = sub.add_parser(
        "eval", help="R-D-perception evaluation: codecs x preprocessors, BD-rate tables",
        description="Encode every image at every quality with every (preprocessor, codec) "
                    "pair, measure bpp, quality metrics and times, and write JSON, CSV, "
                    "plots and BD-rate tables to --out. Rerunning with the same settings "
                    "resumes; other settings into the same --out are refused (--force "
                    "replaces that folder's results). A progress bar shows on a terminal.",
        epilog="Examples: gencodec eval --images skimage:photos --codecs jpeg,webp,bpg "
               "--preprocess none,nlmeans --out results/skimage ; then gencodec report "
               "results/skimage")
    p.add_argument("--images", required=True, metavar="DIR|skimage:NAMES",
                   help="a folder of images, or skimage:astronaut,coffee,... "
                        "(skimage:photos = astronaut, coffee, chelsea, rocket, "
                        "motorcycle_left, hubble_deep_field)")
    p.add_argument("--codecs", default="jpeg,webp,bpg", type=_list,
                   help=f"comma-separated codecs (default jpeg,webp,bpg; known: "
                        f"{', '.join(CODECS)})")
    p.add_argument("--codec-option", "-O", action="append", metavar="CODEC:KEY=VALUE",
                   help="an option of one codec, as -O for 'gencodec encode' (repeatable): "
                        "-O osdiff:model=./sd21 for a learned codec's model folder, "
                        "-O jpeg:subsampling=444 ('gencodec codecs' lists each codec's "
                        "options)")
    p.add_argument("--preprocess", default=NONE, type=_list, metavar="none,NAME,...",
                   help="comma-separated preprocessors: none, a classic FFmpeg filter "
                        "(nlmeans, gblur, unsharp, hqdn3d; options as nlmeans:s=5), or a "
                        "learned model (a directory or hub id, as --model elsewhere) "
                        "(default: none)")
    p.add_argument("--qualities", action="append", metavar="[CODEC=]Q,Q,...",
                   help=f"quality settings on each codec's own scale (quality for jpeg, "
                        f"webp, heif, avif: higher = better; QP for bpg, x265: lower = "
                        f"better; coding steps for diffc: higher = better; see 'gencodec "
                        f"codecs'), per codec (repeatable) or for all; at least 4 per "
                        f"codec for BD-rates; defaults: {defaults}")
    p.add_argument("--metrics", type=_list, default=list(METRICS),
                   help=f"comma-separated metrics (default: all; always available: "
                        f"{', '.join(WEIGHT_FREE)})")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder with LPIPS/DISTS/TOPIQ weight files (also searched: "
                        "$TORCH_HOME/hub/checkpoints, $TORCH_HOME/hub/pyiqa, $TORCH_HOME)")
    p.add_argument("--out", "-o", required=True, metavar="RESULTS",
                   help="results folder (created if missing; a rerun into it resumes; one "
                        "run at a time per folder; another configuration needs --force)")
    p.add_argument("--dataset", help="dataset name in the tables (default: the folder name, "
                                     "or 'skimage')")
    p.add_argument("--crop", type=int, metavar="N", help="use the central NxN pixel crop "
                                                         "of each image (quick runs; every "
                                                         "image must be at least NxN)")
    p.add_argument("--force", "-f", action="store_true",
                   help="replace the results of another configuration in --out (run.json, "
                        "points, summaries); without it such a folder is refused")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count(),
                   help="worker processes (default: CPU count)")
    p.add_argument("--bd-method", choices=METHODS, default="akima",
                   help="BD-rate interpolation (default akima)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    if args.crop is not None and args.crop < 16:
        raise InputError("--crop must be at least 16")
    images, dataset = find_images(args.images, args.crop)
    options = parse_per_codec_options(args.codec_option, args.codecs)
    built = build_codecs(args.codecs, options)  # once: a model-backed codec hashes its model
    qualities = parse_qualities(args.qualities, args.codecs, built=built)
    t0 = time.perf_counter()
    run_info = evaluate(images, args.codecs, args.preprocess, Path(args.out),
                        qualities=qualities, metrics=args.metrics,
                        dataset=args.dataset or dataset, jobs=args.jobs,
                        weights_dir=args.weights_dir, replace=args.force,
                        codec_options=options, built=built)
    summary = summarize(Path(args.out), args.bd_method)
    for metric, text in run_info["unavailable"].items():
        print(f"note: {metric}: {text}: {run_info['unavailable_details'][metric]}")
    print()
    print(summary["bd_markdown"])
    print(f"{len(summary['rows'])} points in {time.perf_counter() - t0:.1f} s; results in "
          f"{args.out} (gencodec report {args.out} writes report.md)")
    return 0
