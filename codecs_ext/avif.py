"""AVIF (AV1 still image) through Pillow's built-in AVIF plugin (libavif)."""

from __future__ import annotations

from PIL import features

from gencodec.codecs_ext._pillow import PillowCodec
from gencodec.codecs_ext.base import QualityRange, chroma_format, int_option


class AvifCodec(PillowCodec):
    """AVIF. ``speed`` 0 (slowest, smallest) .. 10 (default 6); ``subsampling``
    ``"420"`` (default), ``"422"`` or ``"444"`` (``"4:2:0"`` and the like too)."""

    name = "avif"
    suffixes = (".avif",)
    pil_format = "AVIF"
    quality = QualityRange("quality", 0, 100, 60, higher_is_better=True)
    # libavif writes larger pictures, but its decoder refuses sides above 32768 by
    # default (AVIF_DEFAULT_IMAGE_DIMENSION_LIMIT): the stream would not decode.
    max_coded_side = 32768

    def __init__(self, speed: int = 6, subsampling: str = "420"):
        self.speed = int_option(speed, 0, 10, "avif speed")
        self.subsampling = chroma_format(subsampling, ("420", "422", "444"), "avif subsampling")

    def _save_options(self, quality: float) -> dict:
        s = self.subsampling  # Pillow spells it "4:2:0"
        return {"quality": int(quality), "speed": self.speed,
                "subsampling": f"{s[0]}:{s[1]}:{s[2]}"}

    def available(self) -> tuple[bool, str]:
        if not features.check("avif"):
            return False, "this Pillow was built without AVIF support"
        return True, ""

    def backend(self) -> str:
        return f"{super().backend()} (libavif {features.version('avif')})"
