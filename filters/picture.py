"""What the first frame of a video says about the whole video: colour, rotation, ICC
profile, read by :func:`probe_picture` while its file is open and kept as plain values.

Frame side data is never touched through PyAV's wrappers: ``VideoFrame.side_data``
(PyAV 18.1) wraps each entry's metadata dictionary as a dictionary it owns and frees,
which the frame frees again, a double free that crashes the process at the next
garbage collection whenever an entry has metadata -- as the ICC profile FFmpeg's PNG
decoder attaches does (its name). So the rotation comes from ``VideoFrame.rotation``,
which reads the display matrix in C, and the ICC profile from the stream's first
packet, a complete PNG/JPEG/WebP/TIFF picture that Pillow reads.

PyAV cannot attach an ICC profile to an output stream, and Matroska has no place for
one; the profiles that name a colour space FFmpeg has tags for (sRGB, Display P3) are
carried as those tags (:func:`icc_colour_tags`).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import av

#: Codecs whose packets are whole pictures in an image file format Pillow reads, so
#: that the first packet gives the ICC profile (PNG and JPEG as images, in .mkv, .mov).
_PICTURE_CODECS = {"png", "apng", "mjpeg", "webp", "tiff", "jpeg2000"}

AVCOL_SPC_BT709 = 1
AVCOL_PRI_BT709 = 1
AVCOL_PRI_SMPTE432 = 12  # Display P3
AVCOL_TRC_IEC61966_2_1 = 13  # sRGB
AVCOL_RANGE_MPEG = 1
UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED

#: ICC profiles recognised by their description (lower case), as (primaries, transfer).
#: Display P3 is DCI-P3's primaries with a D65 white and sRGB's transfer curve.
_ICC_TAGS = (("display p3", (AVCOL_PRI_SMPTE432, AVCOL_TRC_IEC61966_2_1)),
             ("srgb", (AVCOL_PRI_BT709, AVCOL_TRC_IEC61966_2_1)))


@dataclasses.dataclass(frozen=True)
class Picture:
    """Colour tags (FFmpeg's AVColorSpace, AVColorRange, AVColorPrimaries,
    AVColorTransferCharacteristic values), counter-clockwise rotation in degrees,
    whether the frames are RGB, and the description of an embedded ICC profile."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int
    rotation: int
    rgb: bool
    icc: str | None = None


def icc_description(data: bytes) -> str:
    """The description an ICC profile gives itself ("" when lcms cannot read it)."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(data))).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return ""


def icc_colour_tags(description: str) -> tuple[int, int] | None:
    """(primaries, transfer) of the colour space an ICC profile describes, where FFmpeg
    has tags for it (sRGB, Display P3); None otherwise (a linear-light variant too)."""
    text = description.lower()
    if "linear" in text:
        return None
    return next((tags for name, tags in _ICC_TAGS if name in text), None)


def _packet_icc(packet: av.Packet) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:  # the header only: Pillow decodes no pixels for this
        with Image.open(io.BytesIO(bytes(packet))) as im:
            data = im.info.get("icc_profile")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError):
        return None
    return (icc_description(data) or "unnamed") if data else None


def probe_picture(src: str | Path, index: int) -> Picture | None:
    """:class:`Picture` of the first frame of stream ``index`` of ``src``, decoded on its
    own (None if none decodes). Every value is copied out before the file closes."""
    icc = None
    try:
        with av.open(str(src)) as probe:
            stream = probe.streams[index]
            picture_codec = stream.codec_context.name in _PICTURE_CODECS
            for packet in probe.demux(stream):
                if picture_codec and icc is None and packet.size:
                    icc = _packet_icc(packet) or ""
                for frame in packet.decode():
                    return Picture(int(frame.colorspace), int(frame.color_range),
                                   int(frame.color_primaries), int(frame.color_trc),
                                   int(frame.rotation), frame.format.is_rgb,
                                   icc or None)
    except av.FFmpegError:
        return None
    return None
