"""``gencodec batch``: the same preprocessing and encoding over many files
(:mod:`gencodec.batch`), on local worker processes or a Ray cluster."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gencodec.cli.options import add_force_argument, parse_codec_options
from gencodec.errors import InputError
from gencodec.filters.cli_options import add_runner_arguments

DESCRIPTION = """\
Preprocess and encode many images: MANIFEST is a CSV or JSONL file (columns input,
output and per-item overrides codec, quality, bpp, preprocess, model, options) or a
directory (every image in it, or --glob, with outputs under --out). Relative paths in a
manifest are relative to its folder.

Each output is written to a temporary name and renamed, with a sidecar OUTPUT.gencodec.json
(settings, model fingerprints, input and output sha256, bpp, metrics, timings, version).
An item whose output and sidecar match its settings is skipped, so rerunning the same
command resumes a stopped job. A corrupt input fails its own item; a worker that crashes
or is killed mid-item loses nothing and the item is retried (--retries). Ctrl-C and
SIGTERM stop cleanly, leaving no half-written file. Exit code 0 when every item is done
or up to date, 1 when any failed (listed, and in the summary JSON)."""

EPILOG = """\
examples:
  gencodec batch photos/ --out webp/ --codec webp -q 70
  gencodec batch photos/ --glob '**/*.jpg' --out small/ --codec jpeg --bpp 0.5 \\
      --preprocess MODEL_DIR --jobs 4
  gencodec batch job.csv --codec webp -q 70      # job.csv: input,output[,quality,...]
  gencodec batch job.jsonl --ray                  # Ray: RAY_ADDRESS, or a local instance
  gencodec batch job.jsonl --ray ray://head:10001 --preprocess MODEL_DIR --device cuda

job.csv:
  input,output,codec,quality,bpp,preprocess,options
  a.png,out/a.webp,,,,,
  b.png,out/b.jpg,jpeg,85,,,subsampling=444
  c.png,out/c.webp,,,0.3,nlmeans:s=5,"""


def register(sub) -> None:
    p = sub.add_parser("batch", help="preprocess and encode many files (local or Ray)",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", metavar="MANIFEST",
                   help="a .csv or .jsonl manifest, or a directory of images")
    p.add_argument("--out", metavar="DIR",
                   help="output folder of a directory job (mirrors the input tree)")
    p.add_argument("--glob", metavar="PATTERN",
                   help="files of a directory job (default: every image, sub-folders too)")
    g = p.add_argument_group("settings (defaults of every item; manifest columns override)")
    g.add_argument("--codec", "-c", help="image codec (jpeg, webp, bpg, heif, avif, diffc)")
    rate = g.add_mutually_exclusive_group()
    rate.add_argument("--quality", "-q", type=float,
                      help="codec quality on its own scale (default: the codec's default)")
    rate.add_argument("--bpp", type=float,
                      help="target bits per pixel of each output (bisection on quality)")
    g.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="codec option, e.g. -O subsampling=444 (repeatable)")
    g.add_argument("--model", "-m", metavar="ID|DIR",
                   help="model of a generative codec (DiffC)")
    g.add_argument("--preprocess", "-p", default="none", metavar="SPEC",
                   help="preprocessor: a model folder, registry or hub id, a classic FFmpeg "
                        "filter (nlmeans:s=5), or none (default)")
    g.add_argument("--container", action="store_true",
                   help="write gencodec streams (.gnc) instead of the codec's own files")
    g.add_argument("--metrics", metavar="LIST", default="",
                   help="also decode and score each output, e.g. psnr-rgb,ms-ssim "
                        "(recorded in the sidecars)")
    add_runner_arguments(p)
    x = p.add_argument_group("execution")
    x.add_argument("--jobs", "-j", type=int,
                   help="worker processes (default: one per core, or per GPU with "
                        "--device cuda; with --ray, one actor per CPU/GPU of the cluster)")
    x.add_argument("--retries", type=int, default=2,
                   help="retries of an item whose worker crashed or that failed "
                        "unexpectedly (default: 2)")
    x.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run on Ray (pip install 'gencodec[farm]'): the cluster at ADDRESS, "
                        "else at RAY_ADDRESS, else a new local instance")
    x.add_argument("--summary", metavar="JSON",
                   help="summary file (default: OUT/batch-summary.json for a directory "
                        "job, MANIFEST.summary.json beside a manifest)")
    add_force_argument(p)
    p.set_defaults(func=run)


def _defaults(args):
    from gencodec.batch.manifest import Settings, number

    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    if args.retries < 0:
        raise InputError("--retries must be 0 or more")
    runner = {"backend": args.backend, "device": args.device, "precision": args.precision,
              "tile": args.tile, "overlap": args.overlap, "batch": args.batch}
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    return Settings(codec=args.codec, quality=number(args.quality, "--quality", "batch"),
                    bpp=number(args.bpp, "--bpp", "batch"),
                    preprocess=args.preprocess, model=args.model,
                    options=tuple(sorted(parse_codec_options(args.option).items())),
                    container=args.container, metrics=metrics,
                    runner=tuple(sorted(runner.items())))


def _items(args):
    import dataclasses

    from gencodec.batch.manifest import check_items, read_manifest, scan_directory

    defaults = _defaults(args)
    source = Path(args.manifest)
    if source.is_dir():
        located = scan_directory(source, args.out, args.glob, defaults)
        summary = Path(args.summary or Path(args.out, "batch-summary.json"))
        Path(args.out).mkdir(parents=True, exist_ok=True)
    elif source.is_file():
        if args.out or args.glob:
            raise InputError("--out and --glob are for directory jobs; a manifest names "
                             "its outputs")
        located = read_manifest(source, defaults)
        summary = Path(args.summary or source.with_name(f"{source.stem}.summary.json"))
    else:
        raise InputError(f"{source}: no such manifest file or directory")
    items = [dataclasses.replace(item, force=args.force) for item in check_items(located)]
    return items, summary


def run(args) -> int:
    from gencodec.batch.job import run_batch

    items, summary_path = _items(args)
    if args.ray is not None:
        from gencodec.batch.ray_farm import RayExecutor, import_ray

        import_ray()  # a clear error before any work when Ray is missing
        local_init = {} if (args.ray or os.environ.get("RAY_ADDRESS")) else \
            {"num_cpus": args.jobs} if args.jobs else {}
        executor = RayExecutor(args.ray or None, args.jobs, args.retries, args.device,
                               **local_init)
    else:
        from gencodec.batch.local import LocalExecutor

        executor = LocalExecutor(args.jobs, args.retries, args.device)
    summary = run_batch(items, executor, summary_path)
    print(format_summary(summary, summary_path))
    return 1 if summary["failed"] or summary["not_run"] else 0


def format_summary(summary: dict, path, max_failures: int = 20) -> str:
    """The lines printed at the end of a run."""
    s = summary
    rate = f", {s['items_per_second']:.2f} items/s" if s["items_per_second"] else ""
    lines = [f"batch: {s['done']} done, {s['skipped']} skipped, {s['failed']} failed of "
             f"{s['items']} items in {s['seconds']:.1f} s{rate} ({s['executor']})"]
    if s["mean_bpp"] is not None:
        lines.append(f"bytes in {s['bytes_in']}, out {s['bytes_out']}; "
                     f"mean {s['mean_bpp']:.4f} bpp")
    for f in s["failures"][:max_failures]:
        lines.append(f"failed: {f['error']}")
    if len(s["failures"]) > max_failures:
        lines.append(f"... {len(s['failures']) - max_failures} more failures in the summary")
    lines.append(f"summary: {path}")
    return "\n".join(lines)
