"""Codecs behind one interface (:class:`~gencodec.codecs_ext.base.Codec`).

``CODECS`` is the registry (name -> class), as in CompressAI; :func:`get_codec`
builds one with options::

    from gencodec.codecs_ext import get_codec
    jpeg = get_codec("jpeg", subsampling="444")
    stream = jpeg.encode(image, quality=80)
    out = jpeg.decode(stream)
"""

from __future__ import annotations

import inspect

from gencodec.codecs_ext.avif import AvifCodec
from gencodec.codecs_ext.base import (BppResult, Codec, QualityRange, bits_per_pixel,
                                      check_target_bpp, find_quality_for_bpp)
from gencodec.codecs_ext.bpg import BpgCodec
from gencodec.codecs_ext.diffc import DiffcCodec
from gencodec.codecs_ext.heif import HeifCodec
from gencodec.codecs_ext.jpeg import JpegCodec
from gencodec.codecs_ext.osdiff import OsdiffCodec
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
    "osdiff": OsdiffCodec,
}

#: Codecs that take one image (``x265`` takes a sequence of frames).
IMAGE_CODECS = ("jpeg", "webp", "bpg", "heif", "avif")


def codec_class(name: str) -> type[Codec]:
    """The class registered as ``name``, or an :class:`InputError` listing the known ones."""
    try:
        return CODECS[name]
    except KeyError:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(CODECS)}") from None


def options_of(cls: type[Codec]) -> dict[str, object]:
    """A codec's options (its constructor's keyword parameters) and their defaults."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_options(name: str, options: dict, *, decoding: bool = False) -> None:
    """Refuse options codec ``name`` does not take, naming the ones it does; with
    ``decoding``, also the options that only shape the encoder (their effect is in the
    stream, so a decoder would silently ignore them)."""
    cls = codec_class(name)
    known = options_of(cls)
    for key in options:
        if key not in known:
            if key == "model":
                raise InputError(f"{name} takes no --model (a stock codec; models are for "
                                 "generative codecs such as diffc)")
            raise InputError(f"unknown option {key}; {name} options: "
                             f"{', '.join(known) or '(none)'}")
        if decoding and key not in cls.decoder_options:
            takes = ", ".join(cls.decoder_options) or "none"
            raise InputError(f"{key} is an encoding option of {name}: the stream records its "
                             f"effect, so decoding does not take it ({name} decoding "
                             f"options: {takes})")


def get_codec(name: str, **options) -> Codec:
    """Build the codec registered as ``name`` with its options."""
    check_options(name, options)
    return codec_class(name)(**options)


__all__ = ["CODECS", "IMAGE_CODECS", "BppResult", "Codec", "QualityRange", "bits_per_pixel",
           "check_options", "check_target_bpp", "codec_class", "find_quality_for_bpp",
           "get_codec", "options_of"]
