"""BPG: HEVC intra still images.

With Fabrice Bellard's ``bpgenc``/``bpgdec`` on PATH the payload is a real ``.bpg``
file. Without them (the usual case: BPG is not packaged anywhere we can reach) the
codec falls back to **HEVC intra through x265 via PyAV** -- the same coding tools BPG
uses -- and the payload is a raw HEVC stream behind a 4-byte header
``b"H" + chroma (0 = 4:2:0, 1 = 4:4:4) + 2 reserved bytes``. ``gencodec codecs`` names
which back end is in use. Either kind of payload decodes wherever it can: a ``.bpg``
payload needs ``bpgdec``, a fallback payload needs only PyAV.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from gencodec.codecs_ext import _hevc
from gencodec.codecs_ext.base import Codec, QualityRange, chroma_format
from gencodec.errors import BitstreamError, GencodecError, InputError

BPG_MAGIC = b"BPG\xfb"
FALLBACK_TAG = b"H"
_CHROMA = {"420": (0, "yuv420p"), "444": (1, "yuv444p")}


def _as_bool(value, what: str) -> bool | None:
    """None, a bool, 0/1 or a word such as "yes"/"false" (``-O use_bpgenc=false``)."""
    if value is None or isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{what} must be true or false, got {value!r}")


class BpgCodec(Codec):
    """BPG / HEVC intra. Quality is the HEVC QP (0..51, lower = better).

    ``chroma`` is ``"420"`` (default, like ``bpgenc``) or ``"444"``; ``use_bpgenc``
    forces (True) or forbids (False) the real tools (default: use them when found)."""

    name = "bpg"
    suffixes = (".bpg",)
    quality = QualityRange("qp", 0, 51, 29, higher_is_better=False)
    pad_multiple = 8

    def __init__(self, chroma: str = "420", use_bpgenc: bool | None = None,
                 preset: str = "medium"):
        self.chroma = chroma_format(chroma, tuple(_CHROMA), "bpg chroma")
        self.preset = _hevc.check_preset(preset, "bpg")
        use_bpgenc = _as_bool(use_bpgenc, "bpg use_bpgenc")
        found = shutil.which("bpgenc") is not None and shutil.which("bpgdec") is not None
        if use_bpgenc and not found:
            raise GencodecError("bpgenc/bpgdec are not on PATH")
        self.use_bpgenc = found if use_bpgenc is None else use_bpgenc
        # the fallback payload (tag + raw HEVC) is gencodec's own, not a .bpg file
        self.payload_is_standard = self.use_bpgenc
        if not self.use_bpgenc:  # x265 misbehaves on small pictures (see _hevc)
            self.min_coded_size = _hevc.MIN_SAFE_SIZE

    def backend(self) -> str:
        if self.use_bpgenc:
            return f"bpgenc/bpgdec ({shutil.which('bpgenc')}, {self.chroma})"
        return f"FALLBACK: HEVC intra, {_hevc.x265_version()}, {self.chroma} (bpgenc not found)"

    # -- encoding ----------------------------------------------------------------
    def _encode_payload(self, image: np.ndarray, quality: float) -> bytes:
        if self.use_bpgenc:
            return self._run_bpgenc(image, int(quality))
        code, pix_fmt = _CHROMA[self.chroma]
        h, w = image.shape[:2]
        hevc = _hevc.encode_frames([image], w, h, pix_fmt=pix_fmt, preset=self.preset,
                                   x265_params={"qp": int(quality), "keyint": 1},
                                   colour=_hevc.FULL_RANGE_601)
        return FALLBACK_TAG + bytes([code, 0, 0]) + hevc

    def _run_bpgenc(self, image: np.ndarray, qp: int) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "in.png"), Path(tmp, "out.bpg")
            Image.fromarray(image).save(src)
            proc = subprocess.run(["bpgenc", "-q", str(qp), "-f", self.chroma, "-o", str(dst),
                                   str(src)], capture_output=True)
            if proc.returncode != 0 or not dst.is_file():
                raise GencodecError(f"bpgenc failed: {proc.stderr.decode(errors='replace')}")
            return dst.read_bytes()

    # -- decoding ----------------------------------------------------------------
    def _decode_payload(self, payload: bytes, width: int, height: int) -> np.ndarray:
        if not payload:
            raise BitstreamError("bpg: payload is empty")
        if payload.startswith(BPG_MAGIC):
            return self._run_bpgdec(payload)
        if payload[:1] != FALLBACK_TAG or len(payload) < 4 or payload[1] not in (0, 1):
            raise BitstreamError("bpg: payload is neither a .bpg file nor an HEVC fallback stream")
        frames = _hevc.decode_frames(payload[4:], _hevc.FULL_RANGE_601)
        if len(frames) != 1:
            raise BitstreamError(f"bpg: expected one picture, found {len(frames)}")
        _hevc.check_coded_size(frames[0], "bpg", width, height)
        return frames[0]

    @staticmethod
    def _run_bpgdec(payload: bytes) -> np.ndarray:
        if shutil.which("bpgdec") is None:
            raise BitstreamError("bpg: this stream is a .bpg file and bpgdec is not on PATH")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "in.bpg"), Path(tmp, "out.png")
            src.write_bytes(payload)
            proc = subprocess.run(["bpgdec", "-o", str(dst), str(src)], capture_output=True)
            if proc.returncode != 0:
                raise BitstreamError(f"bpgdec failed: {proc.stderr.decode(errors='replace')}")
            with Image.open(dst) as im:
                return np.asarray(im.convert("RGB"))
