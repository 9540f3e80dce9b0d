"""Codecs behind one interface (:class:`~gencodec.codecs_ext.base.Codec`).

``CODECS`` is the registry (name -> class), as in CompressAI; :func:`get_codec`
builds one with options::

    from gencodec.codecs_ext import get_codec
    jpeg = get_codec("jpeg", subsampling="444")
    stream = jpeg.encode(image, quality=80)
    out = jpeg.decode(stream)
"""

from __future__ import annotations

from gencodec.codecs_ext.avif import AvifCodec
from gencodec.codecs_ext.base import (BppResult, Codec, QualityRange, bits_per_pixel,
                                      check_target_bpp, find_quality_for_bpp)
from gencodec.codecs_ext.bpg import BpgCodec
from gencodec.codecs_ext.diffc import DiffcCodec
from gencodec.codecs_ext.heif import HeifCodec
from gencodec.codecs_ext.jpeg import JpegCodec
from gencodec.codecs_ext.webp import WebpCodec
from gencodec.codecs_ext.x265 import X265Codec
from gencodec.errors import InputError

CODECS: dict[str, type[Codec]] = {
    "jpeg": JpegCodec,
    "webp": WebpCodec,
    "bpg": BpgCodec,
    "heif": HeifCodec,
    "avif": AvifCodec,
    "x265": X265Codec,
    "diffc": DiffcCodec,
}

#: Codecs that take one image (``x265`` takes a sequence of frames).
IMAGE_CODECS = ("jpeg", "webp", "bpg", "heif", "avif")


def get_codec(name: str, **options) -> Codec:
    """Build the codec registered as ``name`` with its options."""
    try:
        cls = CODECS[name]
    except KeyError:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(CODECS)}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise InputError(f"{name}: bad option: {exc}") from None


__all__ = ["CODECS", "IMAGE_CODECS", "BppResult", "Codec", "QualityRange", "bits_per_pixel",
           "check_target_bpp", "find_quality_for_bpp", "get_codec"]
