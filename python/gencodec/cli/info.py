"""``gencodec info``: show a stream's container header."""

from __future__ import annotations

from gencodec import container
from gencodec.errors import BitstreamError
from gencodec.imageio import check_input


def register(sub) -> None:
    p = sub.add_parser("info", help="show a stream's header and check its integrity",
                       description="Print the container header of a gencodec stream and "
                                   "verify its checksums. Rates are in bits per pixel: "
                                   "'stream' counts the whole file (as 'gencodec encode' "
                                   "reports it), 'payload' the codec's own bitstream; for "
                                   "video, per pixel of all frames.")
    p.add_argument("input", help="gencodec stream")
    p.set_defaults(func=run)


def run(args) -> int:
    path = check_input(args.input)
    data = path.read_bytes()
    try:
        show(path, data)
    except BitstreamError as exc:
        raise BitstreamError(f"{path}: {exc}") from exc
    return 0


def show(path, data: bytes) -> None:
    h = container.read_header(data)
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
    print("integrity:     ok (CRC32)")
