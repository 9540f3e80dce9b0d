"""Shared machinery for the codecs that Pillow (and pillow-heif) implement: the
payload is the stock file itself, so any viewer opens ``Codec.payload(stream)``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gencodec.codecs_ext.base import Codec
from gencodec.errors import BitstreamError


class PillowCodec(Codec):
    """A codec whose payload is a file Pillow writes with ``format`` and reads back."""

    pil_format: str = ""

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality)}

    def _encode_payload(self, image: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=self.pil_format, **self._save_options(quality))
        return buf.getvalue()

    def _decode_payload(self, payload: bytes, width: int, height: int) -> np.ndarray:
        try:
            opened = Image.open(io.BytesIO(payload))
        except Image.UnidentifiedImageError:  # its message names a BytesIO object
            raise BitstreamError(f"{self.name}: payload is empty" if not payload else
                                 f"{self.name}: payload ({len(payload)} bytes) is not a "
                                 f"readable {self.pil_format} file (damaged?)") from None
        with opened as im:
            if im.format != self.pil_format:
                raise BitstreamError(f"{self.name}: payload is {im.format}, not {self.pil_format}")
            # Check the size before decoding: a crafted payload must not make us
            # allocate more than the header (already checked against MAX_PIXELS) says.
            if im.size != self.padded_size(width, height):
                raise BitstreamError(f"{self.name}: payload is {im.width}x{im.height}, the "
                                     f"header says {width}x{height}")
            return np.asarray(im.convert("RGB"))

    def backend(self) -> str:
        from PIL import __version__

        return f"Pillow {__version__}"
