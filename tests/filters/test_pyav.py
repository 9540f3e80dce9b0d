"""PyAV integration: PreprocessFilter's frame contract and transcode end to end."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from gencodec.errors import InputError
from gencodec.filters import make_runner
from gencodec.filters.pyav import PreprocessFilter, parse_x265_params, transcode


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
