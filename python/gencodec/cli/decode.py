"""``gencodec decode``: gencodec stream -> image file."""

from __future__ import annotations

from gencodec import container
from gencodec.cli.options import (add_codec_arguments, add_force_argument, codec_options,
                                  print_result)
from gencodec.codecs_ext import get_codec
from gencodec.errors import BitstreamError, InputError
from gencodec.imageio import check_input, check_output, save_image


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode a gencodec stream to an image",
                       description="Decode a gencodec stream; the codec comes from its header.")
    p.add_argument("input", help="gencodec stream")
    p.add_argument("-o", "--output", required=True,
                   help="output image; the format follows the extension (.png recommended: "
                        "lossless; .jpg or .webp would code the image a second time)")
    add_codec_arguments(p, codec_required=False)
    p.add_argument("--max-bytes", type=int, metavar="N",
                   help="progressive codecs (diffc): decode only what fits in the first N "
                        "bytes, giving a coarser image (default: the whole stream)")
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    path = check_input(args.input)
    check_output(args.output, args.force, inputs=[path])  # fail before the work, not after
    if args.max_bytes is not None and args.max_bytes <= 0:
        raise InputError(f"--max-bytes must be positive, got {args.max_bytes}")
    data = path.read_bytes()
    try:
        header = container.read_header(data)
        if header.codec == "x265":
            raise InputError(f"{path}: a {header.codec} stream holds video; use "
                             "'gencodec transcode'")
        image = _decode(header, data, args)
    except BitstreamError as exc:
        raise BitstreamError(f"{path}: {exc}") from exc
    save_image(args.output, image, force=args.force)
    print_result(f"{args.output}: {header.codec} {header.width}x{header.height}", args.output)
    return 0


def _decode(header: container.Header, data: bytes, args):
    codec = get_codec(header.codec, **codec_options(args))
    if args.max_bytes is None:
        return codec.decode(data)
    if not getattr(codec, "progressive", False):
        raise InputError(f"--max-bytes: {header.codec} streams are not progressive")
    return codec.decode(data[:args.max_bytes], max_bytes=args.max_bytes)
