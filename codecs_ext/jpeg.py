"""JPEG through Pillow (libjpeg), with 4:2:0 or 4:4:4 chroma subsampling."""

from __future__ import annotations

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange, chroma_format

_SUBSAMPLING = {"420": 2, "422": 1, "444": 0}


class JpegCodec(PillowCodec):
    """Baseline JPEG. ``subsampling`` is ``"420"`` (default), ``"422"`` or ``"444"``
    (``"4:2:0"`` and the like are accepted too)."""

    name = "jpeg"
    suffixes = (".jpg", ".jpeg", ".jfif")
    pil_format = "JPEG"
    quality = QualityRange("quality", 1, 100, 75, higher_is_better=True)
    max_coded_side = 65500  # libjpeg's JPEG_MAX_DIMENSION

    def __init__(self, subsampling: str = "420"):
        self.subsampling = chroma_format(subsampling, tuple(_SUBSAMPLING), "jpeg subsampling")

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "subsampling": _SUBSAMPLING[self.subsampling],
                "optimize": True}

    def backend(self) -> str:
        return f"{super().backend()} (libjpeg, {self.subsampling})"
