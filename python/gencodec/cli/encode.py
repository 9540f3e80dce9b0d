"""``gencodec encode``: image -> gencodec stream (or the plain stock file with --raw)."""

from __future__ import annotations

from gencodec.cli.options import add_codec_arguments, add_force_argument, codec_options
from gencodec.codecs_ext import bits_per_pixel, find_quality_for_bpp, get_codec
from gencodec.errors import InputError
from gencodec.imageio import check_output, load_image, write_bytes_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "encode", help="encode an image",
        description="Encode an image file into a gencodec stream (container header + the "
                    "codec's payload). --raw writes the codec's own file instead (a .jpg, "
                    ".webp, .heic, .avif any viewer opens).")
    p.add_argument("input", help="input image (PNG, JPEG, WebP, TIFF, HEIC, ...)")
    p.add_argument("-o", "--output", required=True, help="output file")
    add_codec_arguments(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", "-q", type=float,
                      help="codec quality parameter (range and direction: 'gencodec codecs')")
    rate.add_argument("--bpp", type=float, help="target bits per pixel (bisection on quality)")
    p.add_argument("--raw", action="store_true",
                   help="write the bare codec bitstream without the gencodec container")
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.codec == "x265":
        raise InputError("x265 is a video codec: use 'gencodec transcode' for video")
    codec = get_codec(args.codec, **codec_options(args))
    ok, why = codec.available()
    if not ok:
        raise InputError(f"{args.codec} is not available here: {why}")
    if args.quality is not None:
        codec.quality.check(args.quality)
    check_output(args.output, args.force)  # fail before the work, not after
    image = load_image(args.input)
    if args.bpp is not None:
        result = find_quality_for_bpp(codec, image, args.bpp)
        data, quality = result.data, result.quality
    else:
        quality = codec.quality.default if args.quality is None else args.quality
        data = codec.encode(image, quality)
    bpp = bits_per_pixel(data, image)
    if args.raw:
        data = codec.payload(data)
    write_bytes_atomic(args.output, data, force=args.force)
    h, w = image.shape[:2]
    print(f"{args.output}: {args.codec} {codec.quality.name}={quality:g} {w}x{h} "
          f"{len(data)} bytes, {bpp:.4f} bpp")
    return 0
