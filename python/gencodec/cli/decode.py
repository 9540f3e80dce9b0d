"""``gencodec decode``: gencodec stream -> image file."""

from __future__ import annotations

from gencodec import container
from gencodec.cli.options import (add_codec_arguments, add_force_argument, codec_options,
                                  print_result)
from gencodec.codecs_ext import check_options, get_codec
from gencodec.errors import BitstreamError, InputError
from gencodec.imageio import check_output, image_format, input_name, read_input, save_image


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode a gencodec stream to an image",
                       description="Decode a gencodec stream; the codec comes from its header.",
                       epilog="Examples: gencodec decode photo.gcx -o photo.png ; gencodec "
                              "decode s.gcx -o s.png --model gaussian-spectral -O "
                              "profile=profile.json (a DiffC stream made with that profile) "
                              "; cat s.gcx | gencodec decode - -o - > s.png")
    p.add_argument("input", help="gencodec stream, or - for standard input")
    p.add_argument("-o", "--output", required=True,
                   help="output image; the format follows the extension (.png recommended: "
                        "lossless; .jpg or .webp would code the image a second time); - or "
                        "/dev/stdout writes PNG to standard output")
    add_codec_arguments(p, codec_required=False,
                        option_help="decoding option of generative codecs, e.g. -O "
                                    "profile=profile.json or -O recon=x0 for diffc "
                                    "(repeatable); stock codecs take none: what their "
                                    "encoder options changed is in the stream")
    p.add_argument("--max-bytes", type=int, metavar="N",
                   help="progressive codecs (diffc): decode only what fits in the first N "
                        "bytes, giving a coarser image (default: the whole stream); the "
                        "line printed says how many coding steps that was")
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    name = input_name(args.input)
    data = read_input(args.input)
    check_output(args.output, args.force, inputs=[args.input])  # fail before the work
    image_format(args.output)  # an output name without a usable extension: refuse now
    if args.max_bytes is not None and args.max_bytes <= 0:
        raise InputError(f"--max-bytes must be positive, got {args.max_bytes}")
    try:
        header = container.read_header(data)
        if header.codec == "x265":
            raise InputError(f"{name}: a {header.codec} stream holds video; use "
                             "'gencodec transcode'")
        image, detail = _decode(header, data, args)
    except BitstreamError as exc:
        raise BitstreamError(f"{name}: {exc}") from exc
    save_image(args.output, image, force=args.force)
    print_result(f"{args.output}: {header.codec} {header.width}x{header.height}{detail}",
                 args.output)
    return 0


def _decode(header: container.Header, data: bytes, args):
    """The image, and what the summary line adds (the steps a prefix gave)."""
    options = codec_options(args)
    check_options(header.codec, options, decoding=True)
    codec = get_codec(header.codec, **options)
    if args.max_bytes is None:
        return codec.decode(data), ""
    if not getattr(codec, "progressive", False):
        raise InputError(f"--max-bytes: {header.codec} streams are not progressive")
    prefix = data[:args.max_bytes]
    image = codec.decode(prefix, max_bytes=args.max_bytes)
    used = codec.describe_steps(codec.coded_steps(prefix))
    return image, f", {used} from the first {len(prefix)} of {len(data)} bytes"
