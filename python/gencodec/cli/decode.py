"""``gencodec decode``: gencodec stream -> image file."""

from __future__ import annotations

from pathlib import Path

from gencodec import container
from gencodec.cli.options import add_codec_arguments, add_force_argument, codec_options
from gencodec.codecs_ext import get_codec
from gencodec.errors import InputError
from gencodec.imageio import check_output, save_image


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode a gencodec stream to an image",
                       description="Decode a gencodec stream; the codec comes from its header.")
    p.add_argument("input", help="gencodec stream")
    p.add_argument("-o", "--output", required=True,
                   help="output image; the format follows the extension (.png recommended)")
    add_codec_arguments(p, codec_required=False)
    p.add_argument("--max-bytes", type=int, metavar="N",
                   help="progressive codecs (diffc): decode only what fits in the first N "
                        "bytes, giving a coarser image")
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    check_output(args.output, args.force)  # fail before the work, not after
    data = path.read_bytes()
    header = container.read_header(data)
    if header.codec == "x265":
        raise InputError(f"{path}: a {header.codec} stream holds video; use 'gencodec transcode'")
    codec = get_codec(header.codec, **codec_options(args))
    if args.max_bytes is not None:
        if args.max_bytes <= 0:
            raise InputError(f"--max-bytes must be positive, got {args.max_bytes}")
        if not getattr(codec, "progressive", False):
            raise InputError(f"--max-bytes: {header.codec} streams are not progressive")
        image = codec.decode(data[:args.max_bytes], max_bytes=args.max_bytes)
    else:
        image = codec.decode(data)
    if image.ndim != 3:
        raise InputError(f"{path}: a {header.codec} stream holds video; use 'gencodec transcode'")
    save_image(args.output, image, force=args.force)
    print(f"{args.output}: {header.codec} {header.width}x{header.height}")
    return 0
