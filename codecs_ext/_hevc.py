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

from gencodec.errors import BitstreamError


@dataclasses.dataclass(frozen=True)
class ColourModel:
    """How RGB maps to Y'CbCr: the matrix name PyAV/swscale uses and the range."""

    colorspace: str  # "ITU601" or "ITU709"
    color_range: str  # "JPEG" (full) or "MPEG" (limited)


FULL_RANGE_601 = ColourModel("ITU601", "JPEG")
LIMITED_RANGE_709 = ColourModel("ITU709", "MPEG")


def encode_frames(frames: Iterable[np.ndarray], width: int, height: int, *,
                  pix_fmt: str, x265_params: dict[str, object], colour: ColourModel,
                  preset: str = "medium", rate: int = 25) -> bytes:
    """Encode HxWx3 uint8 RGB frames (sizes already even) to a raw HEVC stream."""
    params = {"log-level": "error", **x265_params}
    buf = io.BytesIO()
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
    return buf.getvalue()


def decode_frames(data: bytes, colour: ColourModel) -> list[np.ndarray]:
    """Decode a raw HEVC stream to RGB frames; raises BitstreamError if it does not."""
    try:
        with av.open(io.BytesIO(data), format="hevc") as inp:
            return [f.to_ndarray(format="rgb24", src_colorspace=colour.colorspace,
                                 src_color_range=colour.color_range)
                    for f in inp.decode(video=0)]
    except av.FFmpegError as exc:
        raise BitstreamError(f"HEVC stream does not decode: {exc}") from None


def x265_version() -> str:
    return f"x265 via PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"
