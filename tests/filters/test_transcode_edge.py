"""transcode on the inputs phones, cameras and broadcast produce: rotation (display
matrix), colour primaries and transfer, anamorphic pixels, interlacing, odd sizes,
damaged files and interruptions. Every check looks at the written file."""

from __future__ import annotations

import fractions
import shutil
import subprocess

import av
import numpy as np
import pytest

from gencodec.errors import InputError
from gencodec.filters import make_runner
from gencodec.filters.pyav import PreprocessFilter, check_transcode, transcode


@pytest.fixture(scope="module")
def runner(compact_dir):
    return make_runner(str(compact_dir), tile=128, batch=2)


def _write(path, frames, *, codec="libx264", pix_fmt="yuv420p", rotation=None,
           sar=None, field_order=None, colour=(1, 1, 1, 2), audio_first=False):
    """A clip whose stream says: BT.709 matrix/primaries/transfer, full range (by
    default), the given rotation, pixel aspect ratio and field order; with
    ``audio_first``, an audio stream whose packets come before any video packet."""
    h, w = frames[0].shape[:2]
    cs, prim, trc, rng = colour
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000) if audio_first else None
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            v.options = {"preset": "ultrafast"}
        ctx = v.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = colour
        if sar is not None:
            ctx.sample_aspect_ratio = sar
        if field_order is not None:
            ctx.field_order = field_order
        if rotation is not None:
            v.set_display_rotation(rotation)
        if a is not None:  # every audio packet first
            a.layout = "mono"
            for k in range(0, 48000 * len(frames) // 25, 1024):
                tone = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32),
                                                  format="fltp", layout="mono")
                tone.sample_rate, tone.pts = 48000, k
                tone.time_base = fractions.Fraction(1, 48000)
                out.mux(a.encode(tone))
            out.mux(a.encode(None))
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace=cs, dst_color_range=rng)
            f.colorspace, f.color_primaries, f.color_trc, f.color_range = colour
            f.pts, f.time_base = i, fractions.Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def _props(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        f = next(c.decode(s))
        ctx = s.codec_context
        return {"rotation": f.rotation, "sar": ctx.sample_aspect_ratio,
                "field_order": ctx.field_order, "size": (f.width, f.height),
                "colour": (int(f.colorspace), int(f.color_primaries), int(f.color_trc),
                           int(f.color_range))}


@pytest.mark.parametrize("ext,audio_first", [(".mp4", False), (".mkv", False),
                                             (".mp4", True)])
def test_transcode_keeps_rotation_colour_and_pixel_shape(runner, tmp_path, testsrc, ext,
                                                         audio_first):
    """(An audio packet that comes first opens the encoder and writes the header before
    any video frame is decoded: the properties must be set before that.)"""
    src, dst = tmp_path / f"phone{ext}", tmp_path / f"out{ext}"
    _write(src, testsrc(3, 64, 96), rotation=90, sar=fractions.Fraction(4, 3),
           audio_first=audio_first)
    if audio_first:
        with av.open(str(src)) as c:
            assert next(c.demux()).stream.type == "audio"
    want = _props(src)
    assert want["rotation"] == 90 and want["colour"] == (1, 1, 1, 2)
    transcode(src, dst, PreprocessFilter(runner), crf=40, preset="ultrafast", progress=False)
    got = _props(dst)
    assert got == {**want, "field_order": got["field_order"]}


def test_transcode_keeps_the_field_order(runner, tmp_path, testsrc):
    src, dst = tmp_path / "tff.mkv", tmp_path / "out.mkv"
    _write(src, testsrc(2, 64, 96), field_order=2)  # AV_FIELD_TT: top field first
    assert _props(src)["field_order"] == 2
    transcode(src, dst, PreprocessFilter(runner), crf=40, preset="ultrafast", progress=False)
    assert _props(dst)["field_order"] == 2


def test_transcode_refuses_odd_sizes_in_subsampled_chroma(runner, tmp_path, testsrc):
    src = tmp_path / "odd.mkv"
    _write(src, testsrc(2, 65, 97), codec="ffv1", colour=(1, 1, 1, 1))
    # refused before a model loads or a file is written, with the way out named
    with pytest.raises(InputError, match="97x65 has an odd side, which libx265 cannot "
                                         "code.*--pix-fmt yuv444p"):
        check_transcode(src, tmp_path / "o.mkv")
    with pytest.raises(InputError, match="odd side"):
        transcode(src, tmp_path / "o.mkv", None, progress=False)
    assert not (tmp_path / "o.mkv").exists()
    transcode(src, tmp_path / "o.mkv", PreprocessFilter(runner), pix_fmt="yuv444p",
              crf=40, preset="ultrafast", progress=False)
    assert _props(tmp_path / "o.mkv")["size"] == (97, 65)


def test_truncated_input_codes_what_decodes_and_says_what_was_lost(
        compact_dir, tmp_path, testsrc, capsys):
    from gencodec.cli.main import main

    full, cut = tmp_path / "full.mp4", tmp_path / "cut.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as out:  # moov first
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "10"}
        for i, rgb in enumerate(testsrc(20, 64, 96)):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])  # a download that stopped
    dst = tmp_path / "out.mkv"
    assert main(["transcode", str(cut), str(dst), "--model", str(compact_dir),
                 "--crf", "40", "--preset", "ultrafast", "--no-progress"]) == 0
    with av.open(str(dst)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert 0 < n < 20
    assert f"{20 - n} video frame(s) could not be decoded" in capsys.readouterr().err
    assert transcode(full, tmp_path / "o.mkv", None, preset="ultrafast",
                     progress=False)["lost_frames"] == 0


def test_interrupt_leaves_no_partial_output(runner, tmp_path, testsrc, monkeypatch):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    _write(src, testsrc(6, 64, 96))
    filt = PreprocessFilter(runner, batch=1)
    pushed = []

    def push(frame):  # Ctrl-C while the third frame is filtered
        pushed.append(frame)
        if len(pushed) == 3:
            raise KeyboardInterrupt
        return [PreprocessFilter(runner)(frame)]

    monkeypatch.setattr(filt, "push", push)
    with pytest.raises(KeyboardInterrupt):
        transcode(src, dst, filt, crf=40, preset="ultrafast", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_cover_pictures_are_not_the_video(runner, tmp_path, testsrc):
    """Music files and some MP4s carry the cover as a one-picture "video" stream with
    the attached_pic flag: it is neither filtered as the video nor copied."""
    def with_cover(path, video):
        with av.open(str(path), "w") as out:
            v = None
            if video:
                v = out.add_stream("libx264", rate=25)
                v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
                v.options = {"preset": "ultrafast"}
            cover = out.add_stream("png")
            cover.width, cover.height, cover.pix_fmt = 32, 32, "rgb24"
            cover.disposition = av.stream.Disposition.attached_pic
            frame = av.VideoFrame.from_ndarray(testsrc(1, 32, 32)[0], format="rgb24")
            frame.pts, frame.time_base = 0, fractions.Fraction(1, 25)
            out.mux(cover.encode(frame))
            out.mux(cover.encode(None))
            for i, rgb in enumerate(testsrc(3, 64, 96) if video else []):
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                f.pts, f.time_base = i, fractions.Fraction(1, 25)
                out.mux(v.encode(f))
            if v is not None:
                out.mux(v.encode(None))

    only_cover = tmp_path / "song.mp4"
    with_cover(only_cover, video=False)
    with pytest.raises(InputError, match="no video stream \\(only a cover picture\\)"):
        check_transcode(only_cover, tmp_path / "o.mkv")
    clip = tmp_path / "clip.mp4"
    with_cover(clip, video=True)
    counts = transcode(clip, tmp_path / "o.mkv", PreprocessFilter(runner), crf=40,
                       preset="ultrafast", progress=False)
    assert (counts["frames"], counts["dropped_attachments"]) == (3, 1)
    assert _props(tmp_path / "o.mkv")["size"] == (96, 64)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
def test_an_edit_list_is_not_reported_as_loss(tmp_path, testsrc, write_clip):
    """``ffmpeg -ss 0.5 -c copy`` keeps the GOP before the cut and an edit list that
    hides it: those frames decode but are not shown, and are not lost."""
    src, cut = tmp_path / "full.mp4", tmp_path / "cut.mp4"
    write_clip(src, testsrc(25, 64, 96), audio=False)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", "0.5", "-i", str(src),
                    "-c", "copy", str(cut)], check=True, timeout=60)
    counts = transcode(cut, tmp_path / "o.mkv", None, preset="ultrafast", progress=False)
    assert 0 < counts["frames"] < 25 and counts["lost_frames"] == 0


@pytest.mark.parametrize("settings,message", [
    ({"crf": -3}, r"--crf -3: libx265 takes 0\.\.51"),
    ({"preset": "nonsense"}, "the encoder refuses these settings"),
    ({"codec": "aac"}, "-c:v aac: not a video encoder"),
])
def test_encoder_settings_are_checked_before_any_work(tmp_path, testsrc, settings, message):
    """The encoder takes its options when it opens, which used to be on the first
    packet written (a traceback, after the model had loaded)."""
    src = tmp_path / "in.mkv"
    _write(src, testsrc(2, 64, 96), audio_first=True)
    with pytest.raises(InputError, match=message):
        check_transcode(src, tmp_path / "o.mkv", **settings)
    with pytest.raises(InputError, match=message):
        transcode(src, tmp_path / "o.mkv", None, progress=False, **settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]
