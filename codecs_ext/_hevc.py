"""HEVC encoding and decoding of RGB frames with x265 / FFmpeg through PyAV.

Used by the BPG fallback (intra only, full-range BT.601 like BPG) and by the x265
video codec (BT.709, limited range, like ordinary video). Streams are raw Annex-B
HEVC elementary streams."""

from __future__ import annotations

import dataclasses
import io
from typing import Iterable

import av
import numpy as np

from gencodec.errors import BitstreamError, GencodecError, InputError


@dataclasses.dataclass(frozen=True)
class ColourModel:
    """How RGB maps to Y'CbCr: the matrix name PyAV/swscale uses and the range."""

    colorspace: str  # "ITU601" or "ITU709"
    color_range: str  # "JPEG" (full) or "MPEG" (limited)


FULL_RANGE_601 = ColourModel("ITU601", "JPEG")
LIMITED_RANGE_709 = ColourModel("ITU709", "MPEG")

#: The libx265 bundled in PyAV's wheels (PyAV 18.1: x265 API build 216) overruns a
#: heap buffer in its lookahead (``Lookahead::cuTree``, found with valgrind) on small
#: pictures: any side of 8, or 40-48 wide and at most 48 high. The process then aborts
#: ("corrupted size vs. prev_size") or, worse, carries on with a damaged heap. Pictures at least 64x64 have
#: shown no invalid access, so the codecs pad to that (edge replication, cropped away
#: on decode; the rate cost only touches images smaller than 64x64).
MIN_SAFE_SIZE = 64

#: x265's speed presets, fastest first.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")


def check_preset(preset, what: str) -> str:
    """An x265 preset name, or InputError (before any work, not at the first encode)."""
    if preset not in PRESETS:
        raise InputError(f"{what} preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return preset


def encode_frames(frames: Iterable[np.ndarray], width: int, height: int, *,
                  pix_fmt: str, x265_params: dict[str, object], colour: ColourModel,
                  preset: str = "medium", rate: int = 25) -> bytes:
    """Encode HxWx3 uint8 RGB frames (sizes already multiples of 8 and at least
    :data:`MIN_SAFE_SIZE`) to a raw HEVC stream."""
    if width < MIN_SAFE_SIZE or height < MIN_SAFE_SIZE or width % 8 or height % 8:
        raise ValueError(f"x265 picture {width}x{height}: pad to a multiple of 8, at least "
                         f"{MIN_SAFE_SIZE}x{MIN_SAFE_SIZE}, first")
    # info=0: no SEI message with x265's version and full settings (about 2 KB per
    # stream, which would dominate the rate of small or low-rate images).
    params = {"log-level": "error", "info": 0, **x265_params}
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format="hevc") as out:
            stream = out.add_stream("libx265", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.options = {"preset": preset,
                              "x265-params": ":".join(f"{k}={v}" for k, v in params.items())}
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(format=pix_fmt, dst_colorspace=colour.colorspace,
                                       dst_color_range=colour.color_range)
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    except av.FFmpegError as exc:
        raise GencodecError(f"x265 encoding failed ({preset=}, {params=}): {exc}") from None
    return buf.getvalue()


def decode_frames(data: bytes, colour: ColourModel) -> list[np.ndarray]:
    """Decode a raw HEVC stream to RGB frames; raises BitstreamError if it does not."""
    try:
        with av.open(io.BytesIO(data), format="hevc") as inp:
            return [f.to_ndarray(format="rgb24", src_colorspace=colour.colorspace,
                                 src_color_range=colour.color_range)
                    for f in inp.decode(video=0)]
    except av.FFmpegError as exc:  # its str() is "[Errno N] text: '<none>'"
        raise BitstreamError(f"HEVC stream does not decode: {exc.strerror or exc}") from None


def coded_size(width: int, height: int) -> tuple[int, int]:
    """The picture size the HEVC codecs code a ``width`` x ``height`` image at: rounded
    up to a multiple of 8 and to at least :data:`MIN_SAFE_SIZE`."""
    return (max(MIN_SAFE_SIZE, width + (-width) % 8),
            max(MIN_SAFE_SIZE, height + (-height) % 8))


def check_coded_size(frame: np.ndarray, what: str, width: int, height: int) -> None:
    """Raise BitstreamError unless a decoded picture covers the ``width`` x ``height``
    image the container header announces and is no larger than :func:`coded_size`
    (streams from before the 64x64 minimum, coded at the multiple of 8, still pass)."""
    cw, ch = coded_size(width, height)
    fh, fw = frame.shape[:2]
    if not (width <= fw <= cw and height <= fh <= ch):
        raise BitstreamError(f"{what}: picture is {fw}x{fh}, the header says {width}x{height} "
                             f"(coded at most {cw}x{ch})")


def x265_version() -> str:
    return f"x265 via PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"
