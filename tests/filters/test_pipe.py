"""Rawvideo pipe: exact frame framing, partial reads, truncation, closed readers, and
a real FFmpeg pipeline when Debian's ffmpeg is installed."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gencodec.errors import InputError
from gencodec.filters import make_runner
from gencodec.filters.pipe import (DownstreamClosed, RawFormat, TruncatedInput, parse_size,
                                   run_pipe)

FFMPEG = shutil.which("ffmpeg")
W, H = 48, 32


@pytest.fixture(scope="module")
def runner(compact_dir):
    return make_runner(str(compact_dir), tile=128)


class Trickle(io.RawIOBase):
    """A pipe that returns at most 7 bytes per read, like a slow producer."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), 7, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class ClosedAfter(io.RawIOBase):
    def __init__(self, limit: int):
        self.limit, self.n = limit, 0

    def writable(self):
        return True

    def write(self, b):
        if self.n >= self.limit:
            raise BrokenPipeError(32, "Broken pipe")
        self.n += len(b)
        return len(b)


@pytest.mark.parametrize("pix_fmt", ["rgb24", "yuv420p"])
def test_frames_in_equal_frames_out(runner, testsrc, pix_fmt):
    fmt = RawFormat(W, H, pix_fmt)
    frames = testsrc(5, H, W)
    data = b"".join(fmt.from_rgb(f) for f in frames)
    out = io.BytesIO()
    n = run_pipe(Trickle(data), out, fmt, runner, batch=2)
    assert n == 5 and len(out.getvalue()) == len(data) == 5 * fmt.frame_bytes
    got, size = out.getvalue(), fmt.frame_bytes
    for i in range(5):
        expect = fmt.from_rgb(runner(fmt.to_rgb(data[i * size:(i + 1) * size])))
        # the pipe filters two frames per model call, this one frame: the float sums
        # differ in order, and a value at .5 can round the other way (one code value)
        diff = np.abs(np.frombuffer(got[i * size:(i + 1) * size], np.uint8).astype(int)
                      - np.frombuffer(expect, np.uint8))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-2, (diff.max(), (diff > 0).mean())


def test_truncated_input_is_a_clear_error(runner, testsrc):
    fmt = RawFormat(W, H)
    data = b"".join(fmt.from_rgb(f) for f in testsrc(2, H, W))[:-100]
    out = io.BytesIO()
    with pytest.raises(TruncatedInput, match=f"frame 1: got {fmt.frame_bytes - 100} of "
                                             f"{fmt.frame_bytes} bytes"):
        run_pipe(io.BytesIO(data), out, fmt, runner, batch=4)
    assert len(out.getvalue()) == fmt.frame_bytes  # the complete frame still went out


def test_closed_reader(runner, testsrc):
    fmt = RawFormat(W, H)
    data = b"".join(fmt.from_rgb(f) for f in testsrc(4, H, W))
    with pytest.raises(DownstreamClosed, match="after 2 frames"):
        run_pipe(io.BytesIO(data), ClosedAfter(2 * fmt.frame_bytes), fmt, runner)


def test_format_validation():
    assert parse_size("1280x720") == (1280, 720)
    with pytest.raises(InputError):
        parse_size("1280*720")
    with pytest.raises(InputError, match="above the limit"):  # before any allocation
        RawFormat(100_000, 100_000)


def test_odd_yuv420p_has_ffmpegs_layout(runner, testsrc, tmp_path):
    """Odd sizes: chroma planes of ceil(W/2) x ceil(H/2), as FFmpeg's rawvideo muxer
    writes and its demuxer reads them."""
    import av

    w, h = 33, 21
    fmt = RawFormat(w, h, "yuv420p")
    assert fmt.frame_bytes == w * h + 2 * 17 * 11
    rgb = testsrc(1, h, w)[0]
    data = fmt.from_rgb(rgb)
    assert len(data) == fmt.frame_bytes
    (tmp_path / "f.yuv").write_bytes(data * 2)
    with av.open(str(tmp_path / "f.yuv"), format="rawvideo",
                 options={"video_size": f"{w}x{h}", "pixel_format": "yuv420p"}) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 2  # FFmpeg frames the bytes the same way
    from gencodec.filters.pyav import SWS_FLAGS

    ffmpeg_rgb = frames[0].reformat(format="rgb24", src_colorspace="ITU601",
                                    src_color_range="MPEG",
                                    interpolation=SWS_FLAGS).to_ndarray()
    np.testing.assert_array_equal(fmt.to_rgb(data), ffmpeg_rgb)
    assert np.abs(ffmpeg_rgb.astype(int) - rgb).mean() < 4  # and it is the picture
    out = io.BytesIO()
    assert run_pipe(io.BytesIO(data * 3), out, fmt, runner, batch=2) == 3
    assert len(out.getvalue()) == 3 * fmt.frame_bytes


def _cli(*args):
    return [sys.executable, "-m", "gencodec.cli.main", *args]


def test_cli_pipe_truncated_and_closed(compact_dir, testsrc):
    fmt = RawFormat(W, H)
    data = b"".join(fmt.from_rgb(f) for f in testsrc(3, H, W))
    base = _cli("pipe", "--size", f"{W}x{H}", "--model", str(compact_dir))
    ok = subprocess.run(base + ["--progress"], input=data, capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stderr.decode()
    assert len(ok.stdout) == len(data)
    # stderr is a pipe, not a terminal: no progress bar in it, only the summary
    err = ok.stderr.decode()
    assert err.splitlines()[-1] == "gencodec pipe: 3 frames"
    assert "frame/s" not in err and "\r" not in err, err
    bad = subprocess.run(base, input=data[:-5], capture_output=True, timeout=120)
    assert bad.returncode == 2 and b"input ended inside frame 2" in bad.stderr
    assert len(bad.stdout) == 2 * fmt.frame_bytes
    # a reader that stops after the first bytes: a clean stop, no traceback (the
    # output, 30 frames, is larger than a pipe buffer, so the writer must notice)
    import threading

    many = data * 10
    p = subprocess.Popen(base, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)

    def feed():
        try:
            p.stdin.write(many)
            p.stdin.close()
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    assert len(p.stdout.read(10)) == 10
    p.stdout.close()
    err = p.stderr.read()
    # 141 = 128 + SIGPIPE, like any Unix filter whose reader goes away (and like
    # `gencodec info | head`): a pipefail script sees that the stream was cut
    assert p.wait(timeout=120) == 141 and b"Traceback" not in err, err.decode()
    assert b"closed by its reader" in err
    writer.join(timeout=10)


@pytest.mark.skipif(FFMPEG is None, reason="Debian's ffmpeg is not installed (make test "
                                           "installs it)")
def test_ffmpeg_pipeline(compact_dir, tmp_path):
    """ffmpeg decodes -> gencodec pipe -> ffmpeg encodes libx265, as in the README."""
    src, dst = tmp_path / "src.mkv", tmp_path / "out.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc=size={W}x{H}:rate=10:duration=0.6", "-c:v", "ffv1", str(src)],
                   check=True, timeout=120)
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(src), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True,
                         timeout=120).stdout
    assert len(raw) == 6 * W * H * 3
    dec = subprocess.Popen([FFMPEG, "-v", "error", "-i", str(src), "-f", "rawvideo",
                            "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    mid = subprocess.Popen(_cli("pipe", "--size", f"{W}x{H}", "--model", str(compact_dir)),
                           stdin=dec.stdout, stdout=subprocess.PIPE)
    dec.stdout.close()
    filtered = mid.communicate(timeout=120)[0]
    assert dec.wait(timeout=60) == 0 and mid.returncode == 0
    assert len(filtered) == len(raw)
    runner = make_runner(str(compact_dir), tile=128)
    frames = np.frombuffer(raw, np.uint8).reshape(6, H, W, 3)
    assert filtered == runner(frames).tobytes()
    enc = subprocess.run([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-s", f"{W}x{H}", "-r", "10", "-i", "-", "-c:v", "libx265",
                          "-x265-params", "log-level=error", "-pix_fmt", "yuv420p",
                          str(dst)], input=filtered, capture_output=True, timeout=120)
    if enc.returncode != 0 and b"libx265" in enc.stderr:
        pytest.skip("this ffmpeg has no libx265")
    assert enc.returncode == 0, enc.stderr.decode()
    import av

    with av.open(str(dst)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


@pytest.mark.parametrize("tty", ["stdin", "stdout"])
def test_cli_pipe_refuses_a_terminal(tty, monkeypatch, capsys):
    """A forgotten pipe: stdin a terminal would wait for typed bytes, stdout a terminal
    would print raw frames; both are refused before a model loads (none exists here)."""
    from gencodec.cli.main import main

    class Terminal(io.BytesIO):
        def isatty(self):
            return True

    class Stream:
        def __init__(self, is_tty):
            self.buffer = Terminal() if is_tty else io.BytesIO()

        def isatty(self):
            return self.buffer.isatty()

    monkeypatch.setattr(sys, "stdin", Stream(tty == "stdin"))
    monkeypatch.setattr(sys, "stdout", Stream(tty == "stdout"))
    assert main(["pipe", "--size", "32x16", "--model", "./no-such-model"]) == 2
    assert f"{tty} is a terminal" in capsys.readouterr().err
