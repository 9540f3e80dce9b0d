"""Rawvideo pipe: frames in on one byte stream, filtered frames out on another.

For FFmpeg pipelines::

    ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - \\
      | gencodec pipe --size 1280x720 --model DIR \\
      | ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 -r 25 -i - -c:v libx265 out.mp4

Frames are packed, without headers: ``rgb24`` is H*W*3 bytes, ``yuv420p`` is the Y
plane (H*W bytes), then U and V at half resolution, rounded up for odd sizes as in
FFmpeg's rawvideo (each ceil(H/2)*ceil(W/2) bytes); BT.601 limited range, FFmpeg's
default for untagged rawvideo. Reads are exact (short reads from a pipe are
continued); input that ends inside a frame is an error that says how many bytes were
missing. A reader that closes the output early ends the run cleanly.
"""

from __future__ import annotations

import dataclasses
from typing import BinaryIO, Iterator

import av
import numpy as np

from gencodec.errors import GencodecError, InputError
from gencodec.filters.pyav import SWS_FLAGS
from gencodec.imageio import check_pixels

PIX_FMTS = ("rgb24", "yuv420p")


class TruncatedInput(InputError):
    """The input stream ended inside a frame."""


class DownstreamClosed(GencodecError):
    """The reader of the output closed its end of the pipe."""


@dataclasses.dataclass(frozen=True)
class RawFormat:
    width: int
    height: int
    pix_fmt: str = "rgb24"

    def __post_init__(self):
        if self.width < 1 or self.height < 1:
            raise InputError(f"--size {self.width}x{self.height}: must be positive")
        if self.pix_fmt not in PIX_FMTS:
            raise InputError(f"--pix-fmt {self.pix_fmt}: use {' or '.join(PIX_FMTS)}")
        check_pixels(self.width, self.height, f"--size {self.width}x{self.height}")

    def _planes(self) -> list[tuple[int, int]]:
        """(height, width) of each packed plane."""
        w, h = self.width, self.height
        if self.pix_fmt == "rgb24":
            return [(h, w * 3)]
        return [(h, w)] + [((h + 1) // 2, (w + 1) // 2)] * 2

    @property
    def frame_bytes(self) -> int:
        return sum(h * w for h, w in self._planes())

    def to_rgb(self, buf: bytes | bytearray) -> np.ndarray:
        a = np.frombuffer(buf, dtype=np.uint8)
        if self.pix_fmt == "rgb24":
            return a.reshape(self.height, self.width, 3)
        frame = av.VideoFrame(self.width, self.height, self.pix_fmt)
        start = 0
        for plane, (h, w) in zip(frame.planes, self._planes()):
            # a frame's planes have padded rows (line_size >= width)
            rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            rows[:h, :w] = a[start:start + h * w].reshape(h, w)
            start += h * w
        return frame.reformat(format="rgb24", src_colorspace="ITU601",
                              src_color_range="MPEG", interpolation=SWS_FLAGS).to_ndarray()

    def from_rgb(self, rgb: np.ndarray) -> bytes:
        if self.pix_fmt == "rgb24":
            return np.ascontiguousarray(rgb).tobytes()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        yuv = frame.reformat(format=self.pix_fmt, dst_colorspace="ITU601",
                             dst_color_range="MPEG", interpolation=SWS_FLAGS)
        return b"".join(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
                        [:h, :w].tobytes() for plane, (h, w) in zip(yuv.planes,
                                                                    self._planes()))


def parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    return int(w), int(h)


def read_exact(stream: BinaryIO, n: int) -> bytearray:
    """Read up to ``n`` bytes, continuing after short reads; fewer only at EOF."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            break
        got += k
    del view
    return buf[:got] if got < n else buf


def read_frames(stream: BinaryIO, fmt: RawFormat) -> Iterator[np.ndarray]:
    """Frames of ``fmt`` from ``stream`` as RGB arrays; raises TruncatedInput on a
    partial last frame."""
    index = 0
    while True:
        buf = read_exact(stream, fmt.frame_bytes)
        if not buf:
            return
        if len(buf) < fmt.frame_bytes:
            raise TruncatedInput(
                f"input ended inside frame {index}: got {len(buf)} of {fmt.frame_bytes} "
                f"bytes ({fmt.width}x{fmt.height} {fmt.pix_fmt}); check --size and --pix-fmt")
        yield fmt.to_rgb(buf)
        index += 1


def run_pipe(inp: BinaryIO, out: BinaryIO, fmt: RawFormat, process, batch: int = 1,
             progress=None) -> int:
    """Filter every frame of ``inp`` into ``out`` with ``process`` (N x H x W x 3 uint8
    -> same), ``batch`` frames at a time. Returns the number of frames written;
    raises DownstreamClosed when ``out`` is closed by its reader."""
    written = 0
    pending: list[np.ndarray] = []

    def emit(frames: list[np.ndarray]) -> None:
        nonlocal written
        for rgb in process(np.stack(frames)):
            try:
                out.write(fmt.from_rgb(rgb))
                out.flush()
            except BrokenPipeError:
                raise DownstreamClosed(f"the output pipe was closed by its reader after "
                                       f"{written} frames") from None
            written += 1
            if progress is not None:
                progress.update(1)

    try:
        for rgb in read_frames(inp, fmt):
            pending.append(rgb)
            if len(pending) >= batch:
                emit(pending)
                pending = []
    except TruncatedInput:
        if pending:  # the complete frames still go out before the error
            emit(pending)
        raise
    if pending:
        emit(pending)
    return written
