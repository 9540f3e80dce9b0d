"""HEIF (HEVC still image) through pillow-heif (libheif with x265 / libde265)."""

from __future__ import annotations

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange, chroma_format


class HeifCodec(PillowCodec):
    """HEIF with HEVC intra coding. ``chroma`` is ``"420"`` (default) or ``"444"``."""

    name = "heif"
    suffixes = (".heic", ".heif")
    pil_format = "HEIF"
    # libheif pads odd sizes itself and records the true size (a clean-aperture box), so
    # the payload -- and ``gencodec encode --raw`` -- is a HEIF of exactly the input size.
    pad_multiple = 1
    quality = QualityRange("quality", 0, 100, 50, higher_is_better=True)

    def __init__(self, chroma: str = "420"):
        self.chroma = chroma_format(chroma, ("420", "444"), "heif chroma")

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "chroma": int(self.chroma)}

    def backend(self) -> str:
        import pillow_heif

        return f"pillow-heif {pillow_heif.__version__} (libheif, x265)"
