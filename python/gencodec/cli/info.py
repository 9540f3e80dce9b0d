"""``gencodec info``: show a stream's container header."""

from __future__ import annotations

from pathlib import Path

from gencodec import container
from gencodec.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("info", help="show a stream's header and check its integrity",
                       description="Print the container header of a gencodec stream and "
                                   "verify its checksums.")
    p.add_argument("input", help="gencodec stream")
    p.set_defaults(func=run)


def run(args) -> int:
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    h = container.read_header(data)
    stock = h.fingerprint == container.ZERO_FINGERPRINT
    print(f"file:          {path}")
    print(f"format:        gencodec container v{h.version}")
    print(f"codec:         {h.codec}")
    print(f"size:          {h.width}x{h.height}")
    print(f"payload:       {h.payload_length} bytes "
          f"({h.payload_length * 8 / (h.width * h.height):.4f} bpp)")
    print(f"fingerprint:   {'none (stock codec)' if stock else h.fingerprint.hex()}")
    container.unpack(data)  # raises BitstreamError on truncation or corruption
    print("integrity:     ok (CRC32)")
    return 0
