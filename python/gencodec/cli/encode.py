"""``gencodec encode``: image -> gencodec stream (or the plain stock file with --raw)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from gencodec.cli.options import (add_codec_arguments, add_force_argument, codec_options,
                                  note, print_result)
from gencodec.codecs_ext import (bits_per_pixel, check_target_bpp, find_quality_for_bpp,
                                 get_codec)
from gencodec.errors import InputError
from gencodec.imageio import check_output, load_image, write_bytes_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "encode", help="encode an image",
        description="Encode an image file into a gencodec stream (64-byte container header "
                    "+ the codec's payload). --raw writes the codec's own file instead (a "
                    ".jpg, .webp, .heic, .avif any viewer opens). The line printed on "
                    "success gives the setting used, the bytes written and their rate in "
                    "bits per pixel (bpp = 8 x bytes / (width x height)).")
    p.add_argument("input", help="input image (PNG, JPEG, WebP, TIFF, HEIC, ...), or - for "
                                 "standard input; alpha is composited on white, animations "
                                 "are refused")
    p.add_argument("-o", "--output", required=True,
                   help="output file (never the input; an existing file needs --force), "
                        "or - for standard output")
    add_codec_arguments(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", "-q", type=float,
                      help="codec quality parameter (default: the codec's own; range, "
                           "direction and default: 'gencodec codecs')")
    rate.add_argument("--bpp", type=float,
                      help="target rate in bits per pixel of the file written (container "
                           "header included, or the bare file with --raw); bisection on "
                           "the quality parameter, the closest setting wins")
    p.add_argument("--raw", action="store_true",
                   help="write the bare codec bitstream without the gencodec container")
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.codec == "x265":
        raise InputError("x265 is a video codec: use 'gencodec transcode IN OUT --model none' "
                         "for plain x265 (or --model DIR to preprocess first)")
    codec = get_codec(args.codec, **codec_options(args))
    ok, why = codec.available()
    if not ok:
        raise InputError(f"{args.codec} is not available here: {why}")
    if args.raw and not codec.payload_is_standard:
        raise InputError(f"--raw: {args.codec} streams here are not a file other tools open "
                         f"({codec.backend()}); keep the container")
    if args.quality is not None:
        args.quality = codec.quality.check(args.quality)
    if args.bpp is not None:
        check_target_bpp(args.bpp)
    check_output(args.output, args.force, inputs=[args.input])  # fail before the work
    image = load_image(args.input)
    if args.bpp is not None:
        result = find_quality_for_bpp(codec, image, args.bpp, header=not args.raw)
        data, quality = result.data, result.quality
        _note_rate(args, codec, result)
    else:
        quality = codec.quality.default if args.quality is None else args.quality
        data = codec.encode(image, quality)
    if args.raw:
        data = codec.payload(data)
    elif Path(args.output).suffix.lower() in Image.registered_extensions():
        note(f"{args.output} holds a gencodec stream, which image viewers do not open; "
             "--raw writes the plain file")
    write_bytes_atomic(args.output, data, force=args.force)
    h, w = image.shape[:2]
    print_result(f"{args.output}: {args.codec} {codec.quality.name}={quality:g} {w}x{h} "
                 f"{len(data)} bytes, {bits_per_pixel(data, image):.4f} bpp", args.output)
    return 0


#: A rate further than this (relative) from a reachable --bpp target gets a note.
RATE_TOLERANCE = 0.05


def _note_rate(args, codec, result) -> None:
    """Say when the rate written is not the --bpp asked for, and why: the target is out
    of the codec's reach, or falls between two adjacent settings (DiffC's steps, a
    coarse quantiser) far enough apart that neither is close."""
    name = codec.quality.name
    if not result.reachable:
        note(f"{args.bpp:g} bpp is out of {args.codec}'s reach on this image; the nearest "
             f"is {result.bpp:.4f} bpp at {name}={result.quality:g}")
    elif abs(result.bpp - args.bpp) > RATE_TOLERANCE * args.bpp:
        (q0, r0), (q1, r1) = result.bracket
        note(f"{args.bpp:g} bpp falls between adjacent settings {name}={q0:g} "
             f"({r0:.4f} bpp) and {name}={q1:g} ({r1:.4f} bpp) on this image; wrote the "
             f"nearest, {result.bpp:.4f} bpp at {name}={result.quality:g}")
