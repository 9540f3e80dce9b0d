"""x265 (HEVC) video through PyAV.

``encode`` takes a sequence of frames (TxHxWx3 uint8 RGB, or a list of HxWx3) and
returns a container stream whose payload is ``frame count (u32, big-endian)`` + a raw
HEVC elementary stream (BT.709, limited range, 4:2:0). ``decode`` returns TxHxWx3.
Quality is the CRF (``mode="crf"``, default) or a constant QP (``mode="qp"``), 0..51,
lower = better. ``gop="normal"`` (default, keyint 250 with B-frames) or ``"intra"``
(every frame a keyframe).
"""

from __future__ import annotations

import struct

import numpy as np

from gencodec.codecs_ext import _hevc
from gencodec.codecs_ext.base import Codec, QualityRange
from gencodec.errors import BitstreamError, InputError
from gencodec.imageio import as_rgb_uint8


class X265Codec(Codec):
    name = "x265"
    suffixes = (".hevc", ".h265", ".265")
    quality = QualityRange("crf", 0, 51, 28, higher_is_better=False)
    pad_multiple = 8
    min_coded_size = _hevc.MIN_SAFE_SIZE

    def __init__(self, mode: str = "crf", gop: str = "normal", preset: str = "medium",
                 x265_params: dict[str, object] | None = None):
        if mode not in ("crf", "qp"):
            raise InputError(f"x265 mode must be 'crf' or 'qp', got {mode!r}")
        if gop not in ("normal", "intra"):
            raise InputError(f"x265 gop must be 'normal' or 'intra', got {gop!r}")
        self.mode, self.gop = mode, gop
        self.preset = _hevc.check_preset(preset, "x265")
        self.extra_params = dict(x265_params or {})
        if mode == "qp":
            self.quality = QualityRange("qp", 0, 51, 28, higher_is_better=False)

    def backend(self) -> str:
        return f"{_hevc.x265_version()} ({self.mode}, {self.gop} GOP)"

    def _prepare(self, frames) -> np.ndarray:
        if isinstance(frames, np.ndarray) and frames.ndim != 4:
            # an HxWx3 image would otherwise be read as H frames of W x 3 pixels
            raise InputError(f"x265: expected a TxHxWx3 sequence of frames, got shape "
                             f"{frames.shape} (wrap one image as image[None])")
        seq = [as_rgb_uint8(f, f"frame {i}") for i, f in enumerate(frames)]
        if not seq:
            raise InputError("x265: no frames to encode")
        if any(f.shape != seq[0].shape for f in seq):
            raise InputError("x265: all frames must have the same size")
        return np.stack(seq)

    def _encode_payload(self, frames: np.ndarray, quality: float) -> bytes:
        params: dict[str, object] = {self.mode: int(quality)}
        if self.gop == "intra":
            params["keyint"] = 1
        params.update(self.extra_params)
        t, h, w = frames.shape[:3]
        hevc = _hevc.encode_frames(frames, w, h, pix_fmt="yuv420p", x265_params=params,
                                   colour=_hevc.LIMITED_RANGE_709, preset=self.preset)
        return struct.pack(">I", t) + hevc

    @staticmethod
    def frame_count(payload: bytes) -> int:
        """The number of frames a payload says it holds (its first four bytes)."""
        if len(payload) < 4:
            raise BitstreamError("x265: payload too short")
        return struct.unpack(">I", payload[:4])[0]

    def _decode_payload(self, payload: bytes, width: int, height: int) -> np.ndarray:
        count = self.frame_count(payload)
        frames = _hevc.decode_frames(payload[4:], _hevc.LIMITED_RANGE_709)
        if len(frames) != count:
            raise BitstreamError(f"x265: decoded {len(frames)} frames, expected {count}")
        for f in frames:
            _hevc.check_coded_size(f, "x265", width, height)
        return np.stack(frames)
