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
import io
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
    ``dst``, and copy the audio and subtitle streams packet for packet (payload, pts,
    duration), with their language, title and default/forced flags, and the
    attachments (an ASS track's fonts) where the output is Matroska, the one container
    that stores them (elsewhere they are counted in ``dropped_attachments``).

    pts and time base of the video are kept. Every check (input, container, encoder,
    streams the container cannot carry) runs before the first frame is decoded, and a
    failure leaves no file; :func:`check_transcode` runs the same checks without
    writing anything. Returns counts for the caller."""
    src, dst = Path(src), Path(dst)
    enc = {"codec": codec, "crf": crf, "preset": preset, "x265_params": x265_params,
           "pix_fmt": pix_fmt}
    counts = {"frames": 0, "copied_packets": 0, "dropped_attachments": 0}
    with _open_input(src) as inp, atomic_output(dst, force) as tmp:
        with _open_output(str(tmp), dst) as out:
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            vout, copies, counts["dropped_attachments"] = _add_streams(inp, out, src, dst,
                                                                        **enc)
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


def check_transcode(src: str | os.PathLike, dst: str | os.PathLike, *,
                    codec: str = "libx265", crf: float | None = 28,
                    preset: str | None = None, x265_params: str | None = None,
                    pix_fmt: str | None = None) -> None:
    """Raise :class:`InputError` where :func:`transcode` would refuse, before a (slow)
    model load: the input, the encoder, and whether ``dst``'s container can carry the
    encoded video and every audio and subtitle stream to copy (an .mp4 cannot carry
    SubRip or ASS subtitles, a .mkv cannot carry mov_text). Writes nothing: the
    streams are set up on an in-memory container of ``dst``'s format."""
    src, dst = Path(src), Path(dst)
    mem = io.BytesIO()
    mem.name = dst.name  # FFmpeg guesses the format from the name, as for a file
    with _open_input(src) as inp, _open_output(mem, dst) as out:
        _add_streams(inp, out, src, dst, codec=codec, crf=crf, preset=preset,
                     x265_params=x265_params, pix_fmt=pix_fmt)


def _open_input(src: Path):
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    try:
        inp = av.open(str(src))
    except av.FFmpegError as exc:
        raise InputError(f"{src}: cannot open: {exc}") from None
    if not inp.streams.video:
        inp.close()
        raise InputError(f"{src}: no video stream")
    return inp


def _open_output(target, dst: Path):
    try:
        return av.open(target, "w", format=_muxer_for(dst))
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{dst}: cannot write this container: {exc}") from None


#: Stream tags that stay true when the video is re-encoded (statistics tags and the
#: encoder name do not).
_VIDEO_TAGS = ("language", "title", "handler_name")


def _add_streams(inp, out, src: Path, dst: Path, *, codec: str, crf: float | None,
                 preset: str | None, x265_params: str | None, pix_fmt: str | None):
    """The encoded video stream, one copy of each audio and subtitle stream of ``inp``
    and its attachments in ``out``, in the input's order; returns ``(video, {input
    index: copy} for the streams with packets, attachments dropped)``."""
    vin = inp.streams.video[0]
    options = _video_options(codec, crf, preset, x265_params)
    copies = {}
    vout, dropped = None, 0
    for s in inp.streams:
        if s.index == vin.index:
            vout = _add_video(out, vin, src, dst, codec, pix_fmt)
            vout.options = options
            vout.metadata.update({k: v for k, v in s.metadata.items()
                                  if k.lower() in _VIDEO_TAGS})
            vout.disposition = s.disposition
        elif s.type in ("audio", "subtitle"):
            try:
                copies[s.index] = c = out.add_stream_from_template(s)
            except (av.FFmpegError, ValueError) as exc:
                name = getattr(s.codec_context, "name", None) or "a codec unknown here"
                raise InputError(
                    f"{dst}: the {out.format.name} container cannot carry {s.type} stream "
                    f"{s.index} ({name}): {exc}; pick a container that can (.mkv "
                    "carries most codecs; .mp4 takes mov_text subtitles)") from None
            c.metadata.update(s.metadata)  # language, title, ...
            c.disposition = s.disposition  # default, forced, hearing impaired, ...
        elif s.type == "attachment":  # no packets: the payload is in the header
            if out.format.name == "matroska":
                out.add_stream_from_template(s)  # file name and MIME type included
            else:
                dropped += 1
    out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() != "encoder"})
    return vout, copies, dropped


def _add_video(out, vin, src: Path, dst: Path, codec: str, pix_fmt: str | None):
    rate = vin.average_rate or vin.guessed_rate or fractions.Fraction(25)
    try:
        vout = out.add_stream(codec, rate=rate)
    except (av.FFmpegError, av.codec.codec.UnknownCodecError):
        raise InputError(f"-c:v {codec}: no such encoder in this FFmpeg build") from None
    except ValueError as exc:  # PyAV: the muxer does not take this codec
        raise InputError(f"{dst}: -c:v {codec}: {exc}") from None
    vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
    if codec == "libx265" and min(vout.width, vout.height) < MIN_SAFE_SIZE:
        # PyAV's x265 writes out of bounds on tiny pictures (codecs_ext/_hevc.py).
        raise InputError(f"{src}: {vout.width}x{vout.height} video is below the "
                         f"{MIN_SAFE_SIZE}x{MIN_SAFE_SIZE} that libx265 codes safely")
    supported = [f.name for f in (vout.codec_context.codec.video_formats or [])]
    if pix_fmt and supported and pix_fmt not in supported:
        raise InputError(f"--pix-fmt {pix_fmt}: {codec} takes {', '.join(supported)}")
    vout.pix_fmt = pix_fmt or _pick_pix_fmt(supported, vin.codec_context.pix_fmt)
    vout.time_base = vin.time_base
    vout.codec_context.time_base = vin.time_base
    return vout


def _muxer_for(dst: Path) -> str | None:
    ext = dst.suffix.lower()
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
            ".webm": "webm", ".ts": "mpegts", ".hevc": "hevc", ".265": "hevc",
            ".nut": "nut"}.get(ext)


def _pick_pix_fmt(supported: list[str], src_fmt: str | None) -> str:
    if src_fmt in supported:
        return src_fmt
    return "yuv420p" if "yuv420p" in supported or not supported else supported[0]


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The first video stream of a file as HxWx3 uint8 RGB frames (for tests, tools)."""
    with av.open(str(path)) as inp:
        for frame in inp.decode(video=0):
            yield frame_to_rgb(frame)
