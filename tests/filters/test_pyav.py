"""PyAV integration: PreprocessFilter's frame contract and transcode end to end
(video filtered, audio and subtitle streams copied bit for bit)."""

from __future__ import annotations

import fractions
import shutil
import subprocess

import av
import numpy as np
import pytest

from gencodec.cli.main import main
from gencodec.errors import InputError
from gencodec.filters import make_runner
from gencodec.filters.encoder import parse_x265_params
from gencodec.filters.pyav import PreprocessFilter, check_transcode, transcode


@pytest.fixture(scope="module")
def runner(compact_dir):
    return make_runner(str(compact_dir), tile=128, batch=4)


def _packets(path, kind):
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(bytes(p), p.pts, p.duration) for p in c.demux(s) if p.size]


def _video_times(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return ([float(f.pts * f.time_base) for f in frames], float(s.duration * s.time_base)
                if s.duration else None, frames)


def test_filter_keeps_the_frame_contract(runner, testsrc):
    rgb = testsrc(1, 48, 64)[0]
    src = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="JPEG")
    src.colorspace, src.color_range = 1, 2
    src.pts, src.time_base = 1234, fractions.Fraction(1, 90000)
    out = PreprocessFilter(runner)(src)
    assert (out.width, out.height, out.format.name) == (64, 48, "yuv420p")
    assert (out.pts, out.time_base) == (1234, fractions.Fraction(1, 90000))
    assert (int(out.colorspace), int(out.color_range)) == (1, 2)
    assert not np.array_equal(out.to_ndarray(), src.to_ndarray())


def test_push_flush_batches_in_order(runner, testsrc):
    filt = PreprocessFilter(runner, batch=3)
    frames = []
    for i, rgb in enumerate(testsrc(5, 32, 48)):
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        f.pts, f.time_base = i * 10, fractions.Fraction(1, 250)
        frames.append(f)
    got = []
    for f in frames:
        got += filt.push(f)
    assert len(got) == 3
    got += filt.flush()
    assert [f.pts for f in got] == [0, 10, 20, 30, 40]
    single = PreprocessFilter(runner)(frames[4])
    np.testing.assert_array_equal(got[4].to_ndarray(), single.to_ndarray())


def test_transcode_testsrc_with_audio(runner, tmp_path, testsrc, write_clip):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    frames = testsrc(12, 64, 96)
    write_clip(src, frames)
    counts = transcode(src, dst, PreprocessFilter(runner), crf=30, preset="ultrafast",
                       x265_params="aq-mode=1", progress=False)
    assert counts["frames"] == 12
    pts_in, dur_in, _ = _video_times(src)
    pts_out, dur_out, decoded = _video_times(dst)
    assert len(decoded) == 12
    assert pts_out == pytest.approx(pts_in, abs=1e-3)
    assert dur_in is not None and dur_out == pytest.approx(dur_in, abs=0.05)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
        assert (c.streams.video[0].width, c.streams.video[0].height) == (96, 64)
    audio_in = _packets(src, "audio")
    assert len(audio_in) > 5 and counts["copied_packets"] == len(audio_in)
    assert _packets(dst, "audio") == audio_in  # bytes, pts and durations
    # static content stays static: the bars away from the moving box match frame to frame
    rgb = [f.to_ndarray(format="rgb24") for f in decoded]
    assert np.abs(rgb[3][:20].astype(int) - rgb[7][:20].astype(int)).mean() < 2.0


def test_transcode_photo_clip(runner, tmp_path, write_clip):
    skimage = pytest.importorskip("skimage")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    frames = [np.ascontiguousarray(p[:120, :160]) for p in photos for _ in range(2)]
    src, dst = tmp_path / "photos.mkv", tmp_path / "photos_out.mkv"
    write_clip(src, frames, rate=10, audio=False)
    transcode(src, dst, PreprocessFilter(runner), crf=24, preset="ultrafast", progress=False)
    pts_in, _, _ = _video_times(src)
    pts_out, _, decoded = _video_times(dst)
    assert pts_out == pytest.approx(pts_in, abs=1e-3) and len(decoded) == 6


def test_transcode_errors(runner, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        transcode(tmp_path / "missing.mp4", tmp_path / "o.mp4", None)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(InputError):
        transcode(bad, tmp_path / "o.mp4", None)
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(InputError, match="bad item"):
        parse_x265_params("=3")


def test_transcode_refuses_pictures_x265_cannot_code_safely(tmp_path, testsrc, write_clip):
    src = tmp_path / "tiny.mp4"
    write_clip(src, testsrc(3, 48, 64), audio=False)
    with pytest.raises(InputError, match="below the 64x64"):
        transcode(src, tmp_path / "o.mp4", None, progress=False)
    assert not (tmp_path / "o.mp4").exists()


SRT = """1
00:00:00,040 --> 00:00:00,200
Hello

2
00:00:00,240 --> 00:00:00,400
<i>Second</i> line
"""


FONT = bytes(range(256)) * 8  # stands in for a font file: attachments are opaque bytes


@pytest.fixture
def clip_with_subtitles(tmp_path, testsrc, write_clip):
    """``make(codec, ext)``: H.264 + AAC + a two-cue subtitle stream in ``codec`` (none
    when None), tagged French, titled, default and forced, muxed by the FFmpeg CLI; an
    .mkv also gets a font attachment, as ASS tracks have."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("muxing subtitles needs the ffmpeg command")

    def make(codec, ext):
        base, srt, font = tmp_path / "base.mp4", tmp_path / "cues.srt", tmp_path / "f.ttf"
        write_clip(base, testsrc(12, 64, 96))
        srt.write_text(SRT)
        font.write_bytes(FONT)
        src = tmp_path / f"subs_{codec}{ext}"
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(base)]
        if codec:
            cmd += ["-i", str(srt), "-map", "0:v", "-map", "0:a", "-map", "1", "-c", "copy",
                    "-c:s", codec, "-metadata:s:s:0", "language=fre",
                    "-metadata:s:s:0", "title=Sous-titres", "-disposition:s:0",
                    "default+forced"]
        else:
            cmd += ["-c", "copy"]
        if ext == ".mkv":
            cmd += ["-attach", str(font), "-metadata:s:t", "mimetype=font/ttf"]
        subprocess.run(cmd + [str(src)], check=True, timeout=60)
        return src
    return make


def _layout(path):
    with av.open(str(path)) as c:
        return [(s.type, getattr(s.codec_context, "name", None), s.metadata.get("language"),
                 s.metadata.get("title"), int(s.disposition),
                 (s.metadata.get("filename"), s.mimetype, bytes(s.data))
                 if s.type == "attachment" else None) for s in c.streams]


@pytest.mark.parametrize("codec,ext", [("srt", ".mkv"), ("ass", ".mkv"), ("mov_text", ".mp4")])
def test_transcode_copies_subtitles(runner, clip_with_subtitles, tmp_path, codec, ext):
    src, dst = clip_with_subtitles(codec, ext), tmp_path / f"out{ext}"
    subs_in = _packets(src, "subtitles")
    assert len(subs_in) >= 2 and any(b"Hello" in p[0] for p in subs_in)
    counts = transcode(src, dst, PreprocessFilter(runner), crf=30, preset="ultrafast",
                       progress=False)
    assert counts["frames"] == 12
    assert counts["copied_packets"] == len(_packets(src, "audio")) + len(subs_in)
    assert _packets(dst, "subtitles") == subs_in  # bytes, pts and durations, in order
    # audio: bytes and pts (a plain PyAV remux of the .mkv loses the first AAC packet's
    # duration as well: a muxer matter; the MP4 audio test compares durations too)
    assert [p[:2] for p in _packets(dst, "audio")] == [p[:2] for p in _packets(src, "audio")]
    layout_in, layout_out = _layout(src), _layout(dst)
    assert layout_in[2][2] == "fre" and layout_in[2][4] & int(av.stream.Disposition.forced)
    assert layout_in[2][3] == ("Sous-titres" if ext == ".mkv" else None)  # MP4: no titles
    assert [s[0] for s in layout_out] == ["video", "audio", "subtitle"] + \
        ["attachment"] * (ext == ".mkv")
    assert layout_out[0][1] == "hevc" and layout_out[1:] == layout_in[1:]
    assert ext != ".mkv" or layout_out[3][5] == ("f.ttf", "font/ttf", FONT)
    with av.open(str(src)) as c:
        extradata_in = c.streams.subtitles[0].codec_context.extradata or b""
    with av.open(str(dst)) as c:  # plays back: every stream decodes
        extradata = c.streams.subtitles[0].codec_context.extradata or b""  # ASS header
        # (FFmpeg's MP4 muxer appends its own btrt box to a tx3g entry, as ffmpeg -c copy)
        assert extradata[:len(extradata_in)] == extradata_in
        assert codec == "mov_text" or extradata == extradata_in
        assert sum(1 for _ in c.decode(video=0)) == 12
    with av.open(str(dst)) as c:
        assert sum(f.samples for f in c.decode(audio=0)) > 0
    with av.open(str(dst)) as c:
        text = b"".join(bytes(s.text or s.ass) for s in c.decode(subtitles=0))
    assert b"Hello" in text and b"Second" in text


@pytest.mark.parametrize("codec,ext,dst_ext", [("srt", ".mkv", ".mp4"),
                                               ("mov_text", ".mp4", ".mkv")])
def test_transcode_refuses_subtitles_the_container_cannot_carry(
        clip_with_subtitles, tmp_path, capsys, codec, ext, dst_ext):
    src, dst = clip_with_subtitles(codec, ext), tmp_path / f"out{dst_ext}"
    with pytest.raises(InputError, match=f"cannot carry subtitle stream 2 \\({codec}\\)"):
        check_transcode(src, dst)
    with pytest.raises(InputError, match="cannot carry subtitle"):
        transcode(src, dst, None, preset="ultrafast", progress=False)
    # the command refuses before loading the model (a missing one here) and leaves
    # nothing behind
    assert main(["transcode", str(src), str(dst), "--preprocess",
                 str(tmp_path / "no-such-model"), "--no-progress"]) == 2
    assert "cannot carry subtitle" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["base.mp4", "cues.srt", "f.ttf", src.name])


def test_transcode_drops_attachments_only_outside_matroska(clip_with_subtitles, tmp_path,
                                                          capsys, compact_dir):
    src = clip_with_subtitles(None, ".mkv")
    assert [s[0] for s in _layout(src)] == ["video", "audio", "attachment"]
    counts = transcode(src, tmp_path / "out.mkv", None, preset="ultrafast", progress=False)
    assert counts["dropped_attachments"] == 0
    assert _layout(tmp_path / "out.mkv")[2] == _layout(src)[2]
    assert main(["transcode", str(src), str(tmp_path / "out.mp4"), "--preprocess",
                 str(compact_dir), "--crf", "40", "--preset", "ultrafast",
                 "--no-progress"]) == 0
    assert "1 attachment(s) not copied (fonts: only .mkv" in capsys.readouterr().err
    assert [s[0] for s in _layout(tmp_path / "out.mp4")] == ["video", "audio"]


@pytest.mark.parametrize("pix_fmt,cs,rng", [("yuv420p", 1, 1), ("yuvj420p", 1, 2),
                                            ("yuv420p10le", 9, 1)])
def test_conversions_around_the_model_keep_the_luma(pix_fmt, cs, rng):
    """YUV -> RGB -> YUV with nothing in between gives the luma back: swscale's default
    flags moved 4:2:0 luma by ~1.1 levels on average, noise the encoder paid for."""
    from gencodec.filters.pyav import frame_to_rgb, rgb_to_frame

    skimage = pytest.importorskip("skimage")
    rgb = np.ascontiguousarray(skimage.data.astronaut()[:128, :160])
    src = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=pix_fmt, dst_colorspace=cs, dst_color_range=rng)
    src.colorspace, src.color_range = cs, rng
    back = rgb_to_frame(frame_to_rgb(src), src)
    dtype = np.uint16 if pix_fmt.endswith("10le") else np.uint8

    def luma(frame):
        p = frame.planes[0]
        a = np.frombuffer(p, dtype).reshape(p.height, -1)[:, :p.width]
        return a.astype(float) / (4 if dtype == np.uint16 else 1)  # 8-bit levels

    assert np.abs(luma(back) - luma(src)).mean() < 0.2
    assert np.abs(frame_to_rgb(src).astype(int) - rgb).mean() < 1.5
