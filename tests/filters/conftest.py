"""Fixtures for the filter tests: tiny random models saved once per session, small
frames, and a synthetic clip with audio. Random weights: outputs mean nothing."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest


@pytest.fixture(scope="session")
def compact_dir(tmp_path_factory):
    from gencodec.filters.tiny import tiny_compact

    d = tmp_path_factory.mktemp("compact")
    tiny_compact(seed=1).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def photo():
    """A natural photo crop with an odd size (scikit-image's astronaut)."""
    skimage = pytest.importorskip("skimage")
    return np.ascontiguousarray(skimage.data.astronaut()[40:141, 150:273])


def _testsrc(n: int, h: int, w: int) -> list[np.ndarray]:
    """A moving colour-bar pattern like FFmpeg's testsrc, with a static region."""
    yy, xx = np.mgrid[0:h, 0:w]
    bars = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1)
    frames = []
    for i in range(n):
        f = bars.astype(np.uint8).copy()
        x0 = (4 * i) % max(w - 16, 1)
        f[h // 2:h // 2 + 12, x0:x0 + 16] = (255, 255, 255)
        frames.append(f)
    return frames


def _write_clip(path, frames: list[np.ndarray], *, rate: int = 25, audio: bool = True,
               codec: str = "libx264") -> None:
    """An MP4 (or MKV) with the frames as H.264 and a sine tone as AAC."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "18"}
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            vf.colorspace, vf.color_range = 1, 1
            vf.pts = i
            vf.time_base = fractions.Fraction(1, rate)
            out.mux(v.encode(vf))
        out.mux(v.encode(None))
        if a is not None:
            n = 48000 * len(frames) // rate
            t = np.arange(n) / 48000.0
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(samples[:, k:k + 1024], format="fltp",
                                                layout="mono")
                af.sample_rate, af.pts = 48000, k
                af.time_base = fractions.Fraction(1, 48000)
                out.mux(a.encode(af))
            out.mux(a.encode(None))


@pytest.fixture(scope="session")
def testsrc():
    """``testsrc(n, h, w)``: n RGB frames of a moving testsrc-like pattern."""
    return _testsrc


@pytest.fixture(scope="session")
def write_clip():
    """``write_clip(path, frames, rate=25, audio=True)``: an H.264 (+ AAC) file."""
    return _write_clip
