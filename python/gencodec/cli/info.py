"""``gencodec info``: show a stream's container header (and a DiffC stream's steps)."""

from __future__ import annotations

from gencodec import container
from gencodec.cli.options import add_codec_arguments, codec_options
from gencodec.codecs_ext import check_options
from gencodec.errors import BitstreamError
from gencodec.imageio import input_name, read_input


def register(sub) -> None:
    p = sub.add_parser("info", help="show a stream's header and check its integrity",
                       description="Print the container header of a gencodec stream and "
                                   "verify its checksums. Rates are in bits per pixel: "
                                   "'stream' counts the whole file (as 'gencodec encode' "
                                   "reports it), 'payload' the codec's own bitstream; for "
                                   "video, per pixel of all frames. For a DiffC stream, also "
                                   "its coding steps, and the model and profile whose "
                                   "fingerprint it carries: the embedded models with their "
                                   "own profiles are tried, or the --model and -O profile= "
                                   "given.",
                       epilog="Examples: gencodec info photo.gcx ; gencodec info s.gcx "
                              "--model gaussian-spectral -O profile=profile.json")
    p.add_argument("input", help="gencodec stream, or - for standard input")
    add_codec_arguments(p, codec_required=False,
                        option_help="DiffC streams: the decoding options to check the "
                                    "stream's fingerprint against, e.g. -O "
                                    "profile=profile.json (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    name = input_name(args.input)
    data = read_input(args.input)
    try:
        show(name, data, codec_options(args))
    except BitstreamError as exc:
        raise BitstreamError(f"{name}: {exc}") from exc
    return 0


def show(path, data: bytes, options: dict | None = None) -> None:
    h = container.read_header(data)
    check_options(h.codec, options or {}, decoding=True)
    stock = h.fingerprint == container.ZERO_FINGERPRINT
    pixels = h.width * h.height
    print(f"file:          {path}")
    print(f"format:        gencodec container v{h.version}")
    print(f"codec:         {h.codec}")
    print(f"size:          {h.width}x{h.height}")
    if h.codec == "x265":
        from gencodec.codecs_ext.x265 import X265Codec

        frames = X265Codec.frame_count(data[container.HEADER_SIZE:])
        print(f"frames:        {frames}")
        pixels *= max(frames, 1)
    total = container.HEADER_SIZE + h.payload_length
    print(f"stream:        {total} bytes ({total * 8 / pixels:.4f} bpp)")
    print(f"payload:       {h.payload_length} bytes ({h.payload_length * 8 / pixels:.4f} bpp)")
    print(f"fingerprint:   {'none (stock codec)' if stock else h.fingerprint.hex()}")
    container.unpack(data)  # raises BitstreamError on truncation or corruption
    if h.codec == "diffc":
        from gencodec.codecs_ext.diffc import describe_stream

        for key, value in describe_stream(data, options or {}):
            print(f"{key + ':':<15}{value}")
    print("integrity:     ok (CRC32)")
