"""HEIF (HEVC still image) through pillow-heif (libheif with x265 / libde265)."""

from __future__ import annotations

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange


class HeifCodec(PillowCodec):
    """HEIF with HEVC intra coding. ``chroma`` is ``"420"`` (default) or ``"444"``."""

    name = "heif"
    pil_format = "HEIF"
    pad_multiple = 2
    quality = QualityRange("quality", 0, 100, 50, higher_is_better=True)

    def __init__(self, chroma: str = "420"):
        if chroma not in ("420", "444"):
            raise ValueError("heif chroma must be '420' or '444'")
        self.chroma = chroma

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "chroma": int(self.chroma)}

    def backend(self) -> str:
        import pillow_heif

        return f"pillow-heif {pillow_heif.__version__} (libheif, x265)"
