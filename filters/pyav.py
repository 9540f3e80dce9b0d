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
colorspace, colour range, primaries and transfer; the model sees 8-bit RGB converted
with the frame's own matrix and range. ``push`` may hold frames back to fill a batch; ``flush`` returns
the rest, in order.
"""

from __future__ import annotations

import fractions
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import Interpolation
from tqdm import tqdm

from gencodec.codecs_ext._hevc import MIN_SAFE_SIZE
from gencodec.errors import InputError
from gencodec.imageio import atomic_output
from gencodec.filters.encoder import open_encoder, video_options
from gencodec.filters.picture import (AVCOL_RANGE_MPEG, AVCOL_SPC_BT709, UNSPECIFIED, Picture,
                                     icc_colour_tags, probe_picture)

if TYPE_CHECKING:  # torch loads only with a model: --model none codes without it
    from gencodec.filters.runner import FrameRunner

#: AVColorSpace values swscale has matrices for (BT.709, FCC, BT.470BG, SMPTE 170M,
#: SMPTE 240M, BT.2020); anything else (unspecified) converts as BT.601, FFmpeg's default.
_SWS_COLORSPACES = {1, 4, 5, 6, 7, 9}


#: swscale flags of the YUV <-> RGB conversions around the model: bicubic chroma, full
#: chroma interpolation both ways, accurate rounding. With swscale's defaults a filter
#: that changes nothing still moves 4:2:0 luma by 1.1 levels on average (max 3;
#: astronaut, BT.709 limited range), noise the encoder then pays for; with these the
#: luma comes back unchanged (mean 0.00, max 2) and the RGB is closer to the source.
SWS_FLAGS = int(Interpolation.BICUBIC | Interpolation.ACCURATE_RND
                | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP)


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
                          src_color_range=m["color_range"],
                          interpolation=SWS_FLAGS).to_ndarray()


def rgb_to_frame(rgb: np.ndarray, like: av.VideoFrame) -> av.VideoFrame:
    """RGB back into a frame with ``like``'s format, matrix, range, pts and time_base."""
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    m = _matrix(like)
    if like.format.name != "rgb24":
        out = out.reformat(format=like.format.name, dst_colorspace=m["colorspace"],
                           dst_color_range=m["color_range"], interpolation=SWS_FLAGS)
    out.colorspace, out.color_range = like.colorspace, like.color_range
    out.color_primaries, out.color_trc = like.color_primaries, like.color_trc
    out.pts = like.pts
    if like.time_base is not None:  # frames a script makes have none
        out.time_base = like.time_base
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


def transcode(src: str | os.PathLike, dst: str | os.PathLike, filt: PreprocessFilter | None,
              *, codec: str = "libx265", crf: float | None = 28, preset: str | None = None,
              x265_params: str | None = None, pix_fmt: str | None = None,
              tag: str | None = None, force: bool = False, progress: bool = True) -> dict:
    """Decode ``src``, filter its first video stream, encode it with ``codec`` into
    ``dst``, and copy the audio and subtitle streams packet for packet (payload, pts,
    duration), with their language, title and default/forced flags, and the
    attachments (an ASS track's fonts) where the output is Matroska, the one container
    that stores them (elsewhere they are counted in ``dropped_attachments``, as are
    cover pictures, which are never copied).

    pts and time base of the video are kept, and what the first frame says about the
    picture (colour, rotation, an ICC profile as colour tags: :func:`_set_picture`); RGB
    video coded as YUV is converted with the BT.709 matrix in limited range, and tagged
    so. A damaged or truncated input is coded as far as it decodes; ``lost_frames`` counts the frames that did
    not (packets the decoder dropped, or frames an MP4 header announces beyond the end
    of the file). Every check (input, container, encoder and its options, streams the
    container cannot carry) runs before the first frame is filtered, and a failure
    leaves no file; :func:`check_transcode` runs the same checks without
    writing anything. ``filt`` None codes the frames as they are (plain encoding).
    ``tag``: the codec tag (FourCC) of the video in the container (default: ``hvc1`` for
    HEVC in .mp4/.mov, which Apple's players need, else the muxer's). Returns counts
    for the caller, and ``icc``: the description of the input's ICC profile (None
    without one) and ``icc_carried``: whether it became colour tags."""
    src, dst = Path(src), Path(dst)
    enc = {"codec": codec, "crf": crf, "preset": preset, "x265_params": x265_params,
           "pix_fmt": pix_fmt, "tag": tag}
    counts = {"frames": 0, "copied_packets": 0, "dropped_attachments": 0, "lost_frames": 0,
              "icc": None, "icc_carried": False}
    packets = discarded = 0  # video packets with data; those an edit list cuts away
    with _open_input(src) as inp, atomic_output(dst, force) as tmp:
        with _open_output(str(tmp), dst) as out:
            vin = _video_stream(inp)
            vin.thread_type = "AUTO"
            vout, copies, counts["dropped_attachments"], picture = _add_streams(
                inp, out, src, dst, **enc)
            if picture is not None and picture.icc:
                counts["icc"] = picture.icc
                counts["icc_carried"] = icc_colour_tags(picture.icc) is not None
            open_encoder(vout, codec)
            # Matroska headers do not count frames: estimate from duration and rate
            rate = vin.average_rate or vin.guessed_rate
            announced = vin.frames  # read now: the stream is freed with the file
            total = announced or (round(inp.duration / av.time_base * rate)
                                  if inp.duration and rate else None)
            max_delay = _max_reorder_delay(rate, vin.time_base)
            # disable=None: a bar on a terminal only, not in a redirected log
            bar = tqdm(total=total, unit="frame", desc=f"transcode {src.name}",
                       disable=None if progress else True, dynamic_ncols=True)

            def encode(frames):
                for f in frames:
                    _encode(out, vout, _to_encoder_format(f, vout), dst, counts["frames"],
                            max_delay)
                    counts["frames"] += 1
                    bar.update(1)

            for packet in inp.demux(vin, *[inp.streams[i] for i in copies]):
                if packet.stream.index == vin.index:
                    packets += packet.size > 0
                    discarded += packet.is_discard
                    for frame in _decode(packet, src):
                        encode(filt.push(frame) if filt else [frame])
                elif packet.dts is not None:
                    packet.stream = copies[packet.stream.index]
                    try:  # the first mux opens the encoder and writes the header
                        out.mux(packet)
                    except av.FFmpegError as exc:
                        raise InputError(f"{dst}: cannot write {packet.stream.type} "
                                         f"stream {packet.stream.index}: {exc}") from None
                    counts["copied_packets"] += 1
            if filt:
                encode(filt.flush())
            _encode(out, vout, None, dst, counts["frames"], max_delay)  # drain
            bar.total = bar.n  # an estimate, or a file that ended early: end at 100 %
            bar.close()
        if counts["frames"] == 0:
            raise InputError(f"{src}: the video stream has no decodable frames")
    # damage the decoder skipped (packets without a frame), or a file cut short (fewer
    # packets than the header announces, where it does: MP4, not Matroska): what decoded
    # is written, the loss reported. Packets before an edit list's start decode to
    # frames that are never shown, and are no loss.
    expected = max(packets, announced or 0) - discarded
    counts["lost_frames"] = max(0, expected - counts["frames"])
    return counts


def _decode(packet, src: Path):
    """The frames of one packet; damage the decoder cannot conceal is an InputError
    (the decoder skips what it can, so a truncated file ends early instead)."""
    try:
        return packet.decode()
    except av.FFmpegError as exc:
        raise InputError(f"{src}: cannot decode the video at {packet.pts}: {exc}") from None


def _max_reorder_delay(rate, time_base) -> int | None:
    """The most a packet's dts can lie before its pts, in ``time_base`` ticks: 64 frames
    (x265 and x264 reorder at most 16 B-frames, plus a pyramid level)."""
    if not rate or not time_base:
        return None
    return int(64 / (fractions.Fraction(rate) * time_base)) + 1


def _to_encoder_format(frame: av.VideoFrame, vout) -> av.VideoFrame:
    """``frame`` in the encoder's pixel format, converted with the matrix and range the
    output is tagged with (:func:`_set_picture`): PyAV's own conversion in ``encode``
    would use swscale's default (BT.601) whatever the tags say. The decoder's picture
    type is cleared, as the ffmpeg program does: libx265 would force it as the slice type
    and copy the input's GOP (an all-intra source would stay all intra)."""
    ctx = vout.codec_context
    frame.pict_type = PictureType.NONE
    if frame.format.name == ctx.pix_fmt:
        return frame
    src = _matrix(frame)
    cs, rng = int(ctx.colorspace), int(ctx.color_range)
    out = frame.reformat(format=ctx.pix_fmt, src_colorspace=src["colorspace"],
                         src_color_range=src["color_range"],
                         dst_colorspace=cs if cs in _SWS_COLORSPACES else None,
                         dst_color_range=rng if rng in (1, 2) else None,
                         interpolation=SWS_FLAGS)
    out.colorspace, out.color_range = ctx.colorspace, ctx.color_range
    out.color_primaries, out.color_trc = ctx.color_primaries, ctx.color_trc
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


def _encode(out, vout, frame, dst: Path, index: int, max_delay: int | None = None) -> None:
    try:
        for packet in vout.encode(frame):
            if packet.dts is not None and packet.pts is not None and (
                    packet.dts > packet.pts
                    or (max_delay is not None and packet.pts - packet.dts > max_delay)):
                # x265 gives the packets of a stream shorter than its B-frame delay a
                # dts made from a value it never set (Encoder::m_bframeDelayTime): any
                # number, which the muxer refuses ("pts/dts pair unsupported"). A dts
                # is never after its pts, nor more than the reorder delay before it;
                # outside that, let the muxer work it out.
                packet.dts = None
            out.mux(packet)
    except av.FFmpegError as exc:
        raise InputError(f"{dst}: the {vout.codec_context.name} encoder failed at "
                         f"frame {index}: {exc}") from None


def _set_picture(vout, picture: Picture) -> None:
    """What the first decoded frame says about the whole video and the encoder must
    write: colour matrix, range, primaries, transfer, and the rotation (a phone's
    display matrix, which FFmpeg puts on every decoded frame; flips in it are not
    carried: :mod:`.picture`). Set up front, from a frame decoded on its own: the
    encoder opens and the header is written on the first mux, which may be an audio
    packet that comes before any video frame.

    RGB frames coded as YUV are converted (:func:`_to_encoder_format`) with the BT.709
    matrix in limited range, and tagged so. An ICC profile naming sRGB or Display P3
    gives the primaries and transfer where the frame has no tags of its own."""
    ctx = vout.codec_context
    cs, rng = picture.colorspace, picture.color_range
    if picture.rgb and not av.VideoFormat(vout.pix_fmt).is_rgb:
        cs, rng = AVCOL_SPC_BT709, AVCOL_RANGE_MPEG
    primaries, trc = picture.primaries, picture.trc
    from_icc = icc_colour_tags(picture.icc) if picture.icc else None
    if from_icc and primaries == UNSPECIFIED and trc == UNSPECIFIED:
        primaries, trc = from_icc
    ctx.colorspace, ctx.color_range = cs, rng
    ctx.color_primaries, ctx.color_trc = primaries, trc
    if picture.rotation:
        vout.set_display_rotation(picture.rotation)


def check_transcode(src: str | os.PathLike, dst: str | os.PathLike, *,
                    codec: str = "libx265", crf: float | None = 28,
                    preset: str | None = None, x265_params: str | None = None,
                    pix_fmt: str | None = None, tag: str | None = None) -> None:
    """Raise :class:`InputError` where :func:`transcode` would refuse, before a (slow)
    model load: the input, the encoder, and whether ``dst``'s container can carry the
    encoded video and every audio and subtitle stream to copy (an .mp4 cannot carry
    SubRip or ASS subtitles, a .mkv cannot carry mov_text). Writes nothing: the
    streams are set up on an in-memory container of ``dst``'s format."""
    src, dst = Path(src), Path(dst)
    mem = io.BytesIO()
    mem.name = dst.name  # FFmpeg guesses the format from the name, as for a file
    with _open_input(src) as inp, _open_output(mem, dst) as out:
        vout, _, _, _ = _add_streams(inp, out, src, dst, codec=codec, crf=crf,
                                     preset=preset, x265_params=x265_params,
                                     pix_fmt=pix_fmt, tag=tag)
        open_encoder(vout, codec)


def _open_input(src: Path):
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    try:
        inp = av.open(str(src))
    except av.FFmpegError as exc:
        raise InputError(f"{src}: cannot open: {exc}") from None
    if _video_stream(inp) is None:
        what = " (only a cover picture)" if inp.streams.video else ""
        inp.close()
        raise InputError(f"{src}: no video stream{what}")
    return inp


def _is_cover(stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _video_stream(inp):
    """The first video stream that is not a cover picture (a one-packet "video" stream
    with the attached_pic flag, as music files and some MP4s carry), or None."""
    return next((s for s in inp.streams.video if not _is_cover(s)), None)


def _open_output(target, dst: Path):
    try:
        return av.open(target, "w", format=_muxer_for(dst))
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{dst}: cannot write this container: {exc}") from None


#: Stream tags that stay true when the video is re-encoded (statistics tags and the
#: encoder name do not).
_VIDEO_TAGS = ("language", "title", "handler_name")


def _add_streams(inp, out, src: Path, dst: Path, *, codec: str, crf: float | None,
                 preset: str | None, x265_params: str | None, pix_fmt: str | None,
                 tag: str | None):
    """The encoded video stream, one copy of each audio and subtitle stream of ``inp``
    and its attachments in ``out``, in the input's order; returns ``(video, {input
    index: copy} for the streams with packets, attachments dropped, the first frame's
    :class:`Picture` or None)``."""
    vin = _video_stream(inp)
    options = video_options(codec, crf, preset, x265_params)
    copies = {}
    vout, dropped, picture = None, 0, None
    for s in inp.streams:
        if s.index == vin.index:
            vout, picture = _add_video(out, vin, src, dst, codec, pix_fmt, tag)
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
        elif s.type == "video" and _is_cover(s):  # not filtered, not copied
            dropped += 1
        elif s.type == "attachment":  # no packets: the payload is in the header
            if out.format.name == "matroska":
                out.add_stream_from_template(s)  # file name and MIME type included
            else:
                dropped += 1
    out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() != "encoder"})
    return vout, copies, dropped, picture


def _add_video(out, vin, src: Path, dst: Path, codec: str, pix_fmt: str | None,
               tag: str | None):
    rate = vin.average_rate or vin.guessed_rate or fractions.Fraction(25)
    try:
        vout = out.add_stream(codec, rate=rate)
    except (av.FFmpegError, av.codec.codec.UnknownCodecError):
        raise InputError(f"-c:v {codec}: no such encoder in this FFmpeg build") from None
    except ValueError as exc:  # PyAV: the muxer does not take this codec
        raise InputError(f"{dst}: -c:v {codec}: {exc}") from None
    except TypeError:  # PyAV: an audio encoder, which wants an int rate
        raise InputError(f"-c:v {codec}: not a video encoder") from None
    if vout.type != "video":
        raise InputError(f"-c:v {codec}: not a video encoder")
    vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
    if codec == "libx265" and min(vout.width, vout.height) < MIN_SAFE_SIZE:
        # PyAV's x265 writes out of bounds on tiny pictures (codecs_ext/_hevc.py).
        raise InputError(f"{src}: {vout.width}x{vout.height} video is below the "
                         f"{MIN_SAFE_SIZE}x{MIN_SAFE_SIZE} that libx265 codes safely")
    supported = [f.name for f in (vout.codec_context.codec.video_formats or [])]
    if pix_fmt and supported and pix_fmt not in supported:
        raise InputError(f"--pix-fmt {pix_fmt}: {codec} takes {', '.join(supported)}")
    vout.pix_fmt = pix_fmt or _pick_pix_fmt(supported, vin.codec_context.pix_fmt)
    # the shape of a pixel and the field order are the input's: the filter keeps both
    if vin.codec_context.sample_aspect_ratio:  # None where the input does not say
        vout.codec_context.sample_aspect_ratio = vin.codec_context.sample_aspect_ratio
    vout.codec_context.field_order = vin.codec_context.field_order
    vout.time_base = vin.time_base
    vout.codec_context.time_base = vin.time_base
    _set_codec_tag(vout, out, dst, tag)
    picture = probe_picture(src, vin.index)
    if picture is not None:
        _set_picture(vout, picture)
    return vout, picture


def _set_codec_tag(vout, out, dst: Path, tag: str | None) -> None:
    """``tag`` (a FourCC) on the video, or ``hvc1`` for HEVC in .mp4/.mov: FFmpeg's
    default there, ``hev1``, is what Apple's players refuse."""
    if tag is None and vout.codec_context.codec.canonical_name == "hevc" \
            and out.format.name.split(",")[0] in ("mp4", "mov"):
        tag = "hvc1"
    if tag is None:
        return
    if len(tag) != 4 or not tag.isascii():
        raise InputError(f"--tag {tag!r}: a codec tag is four ASCII characters, e.g. hvc1")
    vout.codec_context.codec_tag = tag


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
