"""AVIF (AV1 still image) through Pillow's built-in AVIF plugin (libavif)."""

from __future__ import annotations

from PIL import features

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange


class AvifCodec(PillowCodec):
    """AVIF. ``speed`` 0 (slowest, smallest) .. 10 (default 6)."""

    name = "avif"
    pil_format = "AVIF"
    quality = QualityRange("quality", 0, 100, 60, higher_is_better=True)

    def __init__(self, speed: int = 6, subsampling: str = "4:2:0"):
        self.speed = int(speed)
        self.subsampling = subsampling

    def _save_options(self, quality: float) -> dict:
        return {"quality": int(quality), "speed": self.speed, "subsampling": self.subsampling}

    def available(self) -> tuple[bool, str]:
        if not features.check("avif"):
            return False, "this Pillow was built without AVIF support"
        return True, ""

    def backend(self) -> str:
        return f"{super().backend()} (libavif {features.version('avif')})"
