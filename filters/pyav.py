"""PyAV integration: :class:`PreprocessFilter` for scripts, :func:`transcode` for files.

PyAV has no Python filter node, so a filter sits between decode and encode::

    import av
    from gencodec.filters import PreprocessFilter

    filt = PreprocessFilter.from_pretrained("path/to/model", batch=4)
    with av.open("in.mp4") as inp, av.open("out.mp4", "w") as out:
        src = inp.streams.video[0]
        dst = out.add_stream("libx265", rate=src.average_rate, options={"crf": "28"})
        dst.width, dst.height, dst.pix_fmt = src.width, src.height, "yuv420p"
        for frame in inp.decode(src):
            for f in filt.push(frame):
                out.mux(dst.encode(f))
        for f in filt.flush():
            out.mux(dst.encode(f))
        out.mux(dst.encode())

Frame contract: a returned frame has the input's size, pixel format, pts, time_base,
colorspace and colour range; the model sees 8-bit RGB converted with the frame's own
matrix and range. ``push`` may hold frames back to fill a batch; ``flush`` returns
the rest, in order.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from tqdm import tqdm

from gencodec.codecs_ext._hevc import MIN_SAFE_SIZE
from gencodec.errors import InputError
from gencodec.imageio import atomic_output
from gencodec.filters.runner import FrameRunner

#: AVColorSpace values swscale has matrices for (BT.709, FCC, BT.470BG, SMPTE 170M,
#: SMPTE 240M, BT.2020); anything else (unspecified) converts as BT.601, FFmpeg's default.
_SWS_COLORSPACES = {1, 4, 5, 6, 7, 9}


def _matrix(frame: av.VideoFrame) -> dict:
    cs, rng = int(frame.colorspace), int(frame.color_range)
    return {"colorspace": cs if cs in _SWS_COLORSPACES else None,
            "color_range": rng if rng in (1, 2) else None}


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """An ``av.VideoFrame`` as HxWx3 uint8 RGB, with the frame's own matrix and range."""
    m = _matrix(frame)
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    return frame.reformat(format="rgb24", src_colorspace=m["colorspace"],
                          src_color_range=m["color_range"]).to_ndarray()


def rgb_to_frame(rgb: np.ndarray, like: av.VideoFrame) -> av.VideoFrame:
    """RGB back into a frame with ``like``'s format, matrix, range, pts and time_base."""
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    m = _matrix(like)
    if like.format.name != "rgb24":
        out = out.reformat(format=like.format.name, dst_colorspace=m["colorspace"],
                           dst_color_range=m["color_range"])
    out.colorspace, out.color_range = like.colorspace, like.color_range
    out.pts, out.time_base = like.pts, like.time_base
    return out


class PreprocessFilter:
    """The preprocessing filter for PyAV scripts (see the module docstring)."""

    def __init__(self, runner: FrameRunner, batch: int | None = None):
        self.runner = runner
        self.batch = int(batch or runner.batch)
        self._pending: list[av.VideoFrame] = []

    @classmethod
    def from_pretrained(cls, spec: str, *, backend: str = "torch", device: str = "cpu",
                        precision: str = "fp32", tile: int = 512, overlap: int | None = None,
                        batch: int = 4) -> "PreprocessFilter":
        from gencodec.filters import make_runner

        return cls(make_runner(spec, backend=backend, device=device, precision=precision,
                               tile=tile, overlap=overlap, batch=batch), batch)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Filter one frame now (no batching across frames)."""
        return rgb_to_frame(self.runner(frame_to_rgb(frame)), frame)

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Queue a frame; returns the filtered frames of a full batch (or nothing)."""
        self._pending.append(frame)
        if len(self._pending) < self.batch:
            return []
        return self.flush()

    def flush(self) -> list[av.VideoFrame]:
        """Filter and return every queued frame."""
        frames, self._pending = self._pending, []
        if not frames:
            return []
        shapes = {(f.height, f.width) for f in frames}
        if len(shapes) > 1:  # a size change mid-stream: filter each size on its own
            return [self(f) for f in frames]
        out = self.runner(np.stack([frame_to_rgb(f) for f in frames]))
        return [rgb_to_frame(o, f) for o, f in zip(out, frames)]


def parse_x265_params(text: str | None) -> dict[str, str]:
    """``"aq-mode=3:psy-rd=2"`` -> ``{"aq-mode": "3", "psy-rd": "2"}``."""
    params: dict[str, str] = {}
    for item in filter(None, (text or "").split(":")):
        key, sep, value = item.partition("=")
        if not key:
            raise InputError(f"--x265-params: bad item {item!r} (KEY=VALUE:KEY=VALUE)")
        params[key] = value if sep else "1"
    return params


def _video_options(codec: str, crf: float | None, preset: str | None,
                   x265_params: str | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    if preset:
        opts["preset"] = preset
    if codec == "libx265":
        params = {"log-level": "error", **parse_x265_params(x265_params)}
        if crf is not None:
            params["crf"] = f"{crf:g}"
        opts["x265-params"] = ":".join(f"{k}={v}" for k, v in params.items())
    else:
        if x265_params:
            raise InputError("--x265-params needs -c:v libx265")
        if crf is not None:
            opts["crf"] = f"{crf:g}"
    return opts


def transcode(src: str | os.PathLike, dst: str | os.PathLike, filt: PreprocessFilter | None,
              *, codec: str = "libx265", crf: float | None = 28, preset: str | None = None,
              x265_params: str | None = None, pix_fmt: str | None = None,
              force: bool = False, progress: bool = True) -> dict:
    """Decode ``src``, filter its first video stream, encode it with ``codec`` into
    ``dst``, and copy the audio and subtitle streams packet for packet.

    pts and time base of the video are kept. Returns counts for the caller."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    try:
        inp = av.open(str(src))
    except av.FFmpegError as exc:
        raise InputError(f"{src}: cannot open: {exc}") from None
    counts = {"frames": 0, "copied_packets": 0}
    with inp, atomic_output(dst, force) as tmp:
        if not inp.streams.video:
            raise InputError(f"{src}: no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        try:
            out = av.open(str(tmp), "w", format=_muxer_for(dst))
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"{dst}: cannot write this container: {exc}") from None
        with out:
            rate = vin.average_rate or vin.guessed_rate or fractions.Fraction(25)
            try:
                vout = out.add_stream(codec, rate=rate)
            except (av.FFmpegError, ValueError) as exc:
                raise InputError(f"-c:v {codec}: no such encoder here: {exc}") from None
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            if codec == "libx265" and min(vout.width, vout.height) < MIN_SAFE_SIZE:
                # PyAV's x265 writes out of bounds on tiny pictures (codecs_ext/_hevc.py).
                raise InputError(f"{src}: {vout.width}x{vout.height} video is below the "
                                 f"{MIN_SAFE_SIZE}x{MIN_SAFE_SIZE} that libx265 codes safely")
            vout.pix_fmt = pix_fmt or _pick_pix_fmt(vout, vin.codec_context.pix_fmt)
            vout.time_base = vin.time_base
            vout.codec_context.time_base = vin.time_base
            vout.options = _video_options(codec, crf, preset, x265_params)
            copies = {}
            for s in inp.streams:
                if s.type in ("audio", "subtitle"):
                    try:
                        copies[s.index] = out.add_stream_from_template(s)
                    except (av.FFmpegError, ValueError) as exc:
                        raise InputError(f"{dst}: cannot copy {s.type} stream {s.index} "
                                         f"({s.codec_context.name}) into this container: "
                                         f"{exc}") from None
            total = vin.frames or None
            bar = tqdm(total=total, unit="frame", desc=f"transcode {src.name}",
                       disable=not progress, dynamic_ncols=True)
            first = True

            def encode(frames):
                nonlocal first
                for f in frames:
                    if first:
                        vout.codec_context.colorspace = f.colorspace
                        vout.codec_context.color_range = f.color_range
                        first = False
                    out.mux(vout.encode(f))
                    counts["frames"] += 1
                    bar.update(1)

            for packet in inp.demux(vin, *[inp.streams[i] for i in copies]):
                if packet.stream.index == vin.index:
                    for frame in packet.decode():
                        encode(filt.push(frame) if filt else [frame])
                elif packet.dts is not None:
                    packet.stream = copies[packet.stream.index]
                    out.mux(packet)
                    counts["copied_packets"] += 1
            if filt:
                encode(filt.flush())
            out.mux(vout.encode(None))
            bar.close()
        if counts["frames"] == 0:
            raise InputError(f"{src}: the video stream has no decodable frames")
    return counts


def _muxer_for(dst: Path) -> str | None:
    ext = dst.suffix.lower()
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
            ".webm": "webm", ".ts": "mpegts", ".hevc": "hevc", ".265": "hevc",
            ".nut": "nut"}.get(ext)


def _pick_pix_fmt(stream, src_fmt: str | None) -> str:
    supported = [f.name for f in (stream.codec_context.codec.video_formats or [])]
    if src_fmt in supported:
        return src_fmt
    return "yuv420p" if "yuv420p" in supported or not supported else supported[0]


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The first video stream of a file as HxWx3 uint8 RGB frames (for tests, tools)."""
    with av.open(str(path)) as inp:
        for frame in inp.decode(video=0):
            yield frame_to_rgb(frame)
