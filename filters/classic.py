"""Classic preprocessing baselines: FFmpeg's ``nlmeans``, ``gblur``, ``unsharp`` (and
``hqdn3d`` where the FFmpeg build has it) on HxWx3 uint8 RGB frames, through
``av.filter.Graph``.

They are the reference any learned preprocessor is compared against: the same place in
the pipeline (before a stock encoder), the same frame contract. Each filter runs in a
graph ``buffer (rgb24) -> format=PIX_FMT -> FILTER -> format=rgb24 -> buffersink``;
``pix_fmt`` is the working format the filter sees (default ``yuv444p``, as a video
pipeline would filter; ``gbrp`` filters the RGB planes themselves)::

    from gencodec.filters.classic import ClassicFilter, load_classic
    denoise = ClassicFilter("nlmeans", s=4)        # or load_classic("nlmeans:s=4")
    out = denoise(image)                           # HxWx3 uint8 -> HxWx3 uint8
    outs = denoise.apply_frames(frames)            # one graph for a sequence

Options are FFmpeg's own (``ffmpeg -h filter=nlmeans``); :data:`CLASSIC_FILTERS` holds
the defaults used when a filter is named without options.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable

import numpy as np

from gencodec.errors import InputError
from gencodec.imageio import as_rgb_uint8

#: name -> default options (FFmpeg option names). Strengths are chosen to change a clean
#: photo visibly but mildly, as a preprocessing baseline would.
CLASSIC_FILTERS: dict[str, dict[str, object]] = {
    "nlmeans": {"s": 4.0, "p": 7, "r": 15},          # non-local means denoiser
    "gblur": {"sigma": 0.8},                          # Gaussian blur
    "unsharp": {"luma_msize_x": 5, "luma_msize_y": 5, "luma_amount": 0.8},  # sharpen
    "hqdn3d": {"luma_spatial": 4.0},                  # spatio-temporal denoiser (GPL builds)
}

DEFAULT_PIX_FMT = "yuv444p"
_TIME_BASE = Fraction(1, 25)
#: Frames narrower or lower than this are edge-padded to it for the filter and cropped
#: back: FFmpeg's gblur corrupts the heap on frames one pixel wide (PyAV's FFmpeg,
#: found with 1x1 to 3x1 images), and a filter's border handling needs some frame.
MIN_SIDE = 16


def classic_available(name: str) -> tuple[bool, str]:
    """Whether FFmpeg (as linked into PyAV) has the filter, and why not."""
    import av

    if name not in CLASSIC_FILTERS:
        return False, f"unknown classic filter {name!r}; known: {', '.join(CLASSIC_FILTERS)}"
    if name not in av.filter.filters_available:
        return False, f"this FFmpeg build (PyAV {av.__version__}) has no {name} filter"
    return True, ""


class ClassicFilter:
    """One FFmpeg filter with options, callable on an HxWx3 uint8 RGB array."""

    def __init__(self, name: str, pix_fmt: str = DEFAULT_PIX_FMT, **options):
        ok, why = classic_available(name)
        if not ok:
            raise InputError(why)
        self.name = name
        self.pix_fmt = pix_fmt
        self.options = {**CLASSIC_FILTERS[name], **options}
        self._graph(64, 64)  # bad options fail here, before any work is queued

    def _graph(self, width: int, height: int):
        """``buffer (rgb24) -> format -> filter -> format=rgb24 -> buffersink``, configured."""
        import av

        try:
            graph = av.filter.Graph()
            chain = [graph.add_buffer(width=width, height=height, format="rgb24",
                                      time_base=_TIME_BASE),
                     graph.add("format", f"pix_fmts={self.pix_fmt}"),
                     graph.add(self.name, self.args),
                     graph.add("format", "pix_fmts=rgb24"),
                     graph.add("buffersink")]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"{self.name}: bad options {self.args!r} "
                             f"(pix_fmt {self.pix_fmt}): {exc}") from None
        return graph

    @property
    def args(self) -> str:
        """The filter's option string, as on an ffmpeg command line."""
        return ":".join(f"{k}={v}" for k, v in self.options.items())

    @property
    def spec(self) -> str:
        """A string :func:`load_classic` turns back into this filter."""
        extra = "" if self.pix_fmt == DEFAULT_PIX_FMT else f":pix_fmt={self.pix_fmt}"
        return f"{self.name}:{self.args}{extra}"

    def __repr__(self) -> str:
        return f"ClassicFilter({self.spec!r})"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.apply_frames([image])[0]

    def apply_frames(self, frames: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Filter a sequence of same-sized frames through one graph (temporal filters
        such as hqdn3d see the previous frames); returns as many frames."""
        import av

        seq = [as_rgb_uint8(f, f"frame {i}") for i, f in enumerate(frames)]
        if not seq:
            return []
        h, w = seq[0].shape[:2]
        if any(f.shape != seq[0].shape for f in seq):
            raise InputError(f"{self.name}: all frames must have the same size")
        pad = ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w)), (0, 0))
        graph = self._graph(w + pad[1][1], h + pad[0][1])
        out: list[np.ndarray] = []
        for i, f in enumerate(seq):
            f = np.pad(f, pad, mode="edge") if pad[0][1] or pad[1][1] else f
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, _TIME_BASE
            graph.push(vf)
            out += _drain(graph)
        graph.push(None)  # end of stream: flush frames a filter holds back
        out += _drain(graph)
        if len(out) != len(seq):
            raise RuntimeError(f"{self.name}: {len(seq)} frames in, {len(out)} out")
        return [np.ascontiguousarray(o[:h, :w]) for o in out]


def _drain(graph) -> list[np.ndarray]:
    import av

    frames = []
    while True:
        try:
            frames.append(np.ascontiguousarray(graph.pull().to_ndarray(format="rgb24")))
        except (av.BlockingIOError, av.EOFError):
            return frames


def load_classic(spec: str, **options) -> ClassicFilter:
    """``"nlmeans"``, ``"nlmeans:s=5"`` or ``"gblur:sigma=1.5:pix_fmt=gbrp"`` -> filter;
    keyword ``options`` override those in the spec."""
    name, _, rest = spec.partition(":")
    spec_options: dict[str, object] = {}
    for pair in filter(None, rest.split(":")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"classic filter option {pair!r} in {spec!r} is not KEY=VALUE")
        spec_options[key] = value
    return ClassicFilter(name, **{**spec_options, **options})


def is_classic(spec: str) -> bool:
    """Whether a preprocessor spec names one of the classic filters."""
    return spec.partition(":")[0] in CLASSIC_FILTERS
