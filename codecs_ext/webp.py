"""Lossy WebP through Pillow (libwebp)."""

from __future__ import annotations

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange, int_option


class WebpCodec(PillowCodec):
    """Lossy WebP (VP8, 4:2:0). ``method`` 0..6 trades speed for size (default 6)."""

    name = "webp"
    suffixes = (".webp",)
    pil_format = "WEBP"
    quality = QualityRange("quality", 0, 100, 75, higher_is_better=True)
    max_coded_side = 16383  # the VP8 / WebP container limit

    def __init__(self, method: int = 6):
        self.method = int_option(method, 0, 6, "webp method")

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "method": self.method, "lossless": False}

    def backend(self) -> str:
        return f"{super().backend()} (libwebp)"
