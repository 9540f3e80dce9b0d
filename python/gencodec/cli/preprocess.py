"""``gencodec preprocess``: image -> preprocessing model -> stock image codec."""

from __future__ import annotations

from gencodec.cli.options import add_force_argument, parse_codec_options
from gencodec.errors import InputError
from gencodec.filters.cli_options import add_model_argument, add_runner_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "preprocess", help="preprocess an image and encode it with a stock codec",
        description="Run the preprocessing model on an image, then encode it with a stock "
                    "image codec; the output is the codec's own file (.webp, .jpg, ...), "
                    "or a PNG of the preprocessed image when --codec is not given.",
        epilog="example: gencodec preprocess in.png --model DIR --codec webp --quality 70 "
               "-o out.webp")
    p.add_argument("input", help="input image")
    p.add_argument("-o", "--output", required=True, help="output file")
    add_model_argument(p)
    p.add_argument("--codec", "-c", help="stock image codec (jpeg, webp, bpg, heif, avif); "
                                         "none: write the preprocessed image itself")
    p.add_argument("--quality", "-q", type=float, help="codec quality on the codec's own scale (default: the codec's "
                        "default; 'gencodec codecs' lists ranges and defaults)")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE",
                   help="codec option, e.g. -O method=4 (repeatable)")
    p.add_argument("--save-preprocessed", metavar="PNG",
                   help="also write the preprocessed image (lossless)")
    add_runner_arguments(p)
    add_force_argument(p)
    p.set_defaults(func=run)


#: Where the codecs that preprocessing does not feed are used instead.
_NOT_HERE = {
    "diffc": "DiffC codes the image itself with a diffusion model, without preprocessing: "
             "gencodec encode --codec diffc",
    "x265": "x265 codes video: gencodec transcode --model DIR (or --model none for "
            "plain x265), which encodes with libx265",
}


def _check_suffixes(args) -> None:
    """The output's name says what it holds: without --codec the preprocessed image is
    written losslessly (a .jpg would silently add a JPEG at Pillow's quality 75), and
    a codec's file gets that codec's suffix (not JPEG data in a .png)."""
    from pathlib import Path

    from PIL import Image

    from gencodec.codecs_ext import CODECS, IMAGE_CODECS

    lossy = {s for name in IMAGE_CODECS for s in CODECS[name].suffixes}  # the stock codecs
    for name in filter(None, (None if args.codec else args.output, args.save_preprocessed)):
        if Path(name).suffix.lower() in lossy:
            raise InputError(f"{name}: the preprocessed image is written losslessly; name it "
                             ".png or .tif, or give --codec and --quality to encode it")
    if args.codec:
        suffix = Path(args.output).suffix.lower()
        known = CODECS[args.codec].suffixes
        image_suffix = suffix in lossy or suffix in Image.registered_extensions()
        if image_suffix and known and suffix not in known:  # other names: the user's call
            raise InputError(f"{args.output}: a {args.codec} file would get the {suffix} "
                             f"suffix; name it {known[0]}")


def run(args) -> int:
    from gencodec.codecs_ext import IMAGE_CODECS, bits_per_pixel, get_codec
    from gencodec.filters.cli_options import require_model, runner_from_args
    from gencodec.imageio import check_output, load_image, save_image, write_bytes_atomic

    if args.codec is not None and args.codec not in IMAGE_CODECS:
        raise InputError(f"--codec {args.codec}: use a stock image codec "
                         f"({', '.join(IMAGE_CODECS)}); {_NOT_HERE.get(args.codec, '')}"
                         .rstrip("; "))
    # fail before the (slow) model load, and before --save-preprocessed is written: a
    # taken output, a bad codec option, an unreadable image
    require_model(args)
    check_output(args.output, args.force, inputs=[args.input])
    _check_suffixes(args)
    if args.save_preprocessed:
        check_output(args.save_preprocessed, args.force,
                     inputs=[args.input, args.output])
    codec = quality = None
    if args.codec is not None:
        codec = get_codec(args.codec, **parse_codec_options(args.option))
        if not codec.payload_is_standard:  # the bpg fallback: HEVC data, not a .bpg file
            raise InputError(f"--codec {args.codec}: its files here are not ones other tools "
                             f"open ({codec.backend()}); use 'gencodec encode' to keep the "
                             "gencodec container")
        quality = codec.quality.check(codec.quality.default if args.quality is None
                                      else args.quality)
    image = load_image(args.input)
    runner = runner_from_args(args)
    out = runner(image)
    if args.save_preprocessed:
        save_image(args.save_preprocessed, out, force=args.force)
    h, w = image.shape[:2]
    if codec is None:
        save_image(args.output, out, force=args.force)
        print(f"{args.output}: preprocessed {w}x{h}")
        return 0
    payload = codec.payload(codec.encode(out, quality))  # the codec's own file
    write_bytes_atomic(args.output, payload, force=args.force)
    print(f"{args.output}: preprocessed + {args.codec} {codec.quality.name}={quality:g} "
          f"{w}x{h} {len(payload)} bytes, {bits_per_pixel(payload, image):.4f} bpp")
    return 0
