"""gencodec.filters: the generative preprocessing filter.

* :class:`FrameModel` (:mod:`.model`) -- the network interface: RGB frames in [0, 1]
  in, the same out; :class:`CompactFilterNet` (:mod:`.compact`, the embedded default's
  architecture) and :class:`OneStepDiffusion` (:mod:`.onestep`, the paper's VAE +
  one-step UNet + static embedding) implement it; :func:`load_frame_model` loads either.
* :class:`FrameRunner` (:mod:`.runner`) -- tiled (overlap, feathered blending),
  padded, batched inference on any frame size, over a back end (:mod:`.backends`:
  PyTorch CPU/CUDA, ONNX Runtime CPU/CUDA).
* :class:`PreprocessFilter` and :func:`transcode` (:mod:`.pyav`) -- PyAV integration;
  :mod:`.picture` reads what the first frame says (colour, rotation, ICC profile),
  :mod:`.encoder` checks the encoder options.
* :mod:`.pipe` -- rawvideo stdin -> stdout for FFmpeg pipelines.
* :mod:`.export` -- TorchScript (FFmpeg ``dnn_processing``, LibTorch) and ONNX.

No trained model ships yet: every entry point needs a model directory or hub id.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np

from gencodec.errors import InputError
from gencodec.filters.classic import CLASSIC_FILTERS, is_classic, load_classic

if TYPE_CHECKING:
    from gencodec.filters.runner import FrameRunner

#: Names imported on first use (PEP 562), so that importing gencodec.filters -- as
#: every ``gencodec`` command does to build its parser -- does not load torch or PyAV.
_LAZY = {
    "CompactFilterNet": "compact", "FrameModel": "model", "load_frame_model": "model",
    "NO_MODEL_MESSAGE": "model", "OneStepDiffusion": "onestep", "FrameRunner": "runner",
    "PreprocessFilter": "pyav", "transcode": "pyav",
}


def make_runner(spec, *, backend: str = "torch", device: str = "cpu",
                precision: str = "fp32", tile: int | None = None, overlap: int | None = None,
                batch: int = 4, threads: int = 0) -> FrameRunner:
    """A :class:`FrameRunner` for a model (a :class:`FrameModel` or anything
    :func:`load_frame_model` takes) on the named back end."""
    from gencodec.filters.backends import make_backend
    from gencodec.filters.model import FrameModel, load_frame_model
    from gencodec.filters.runner import FrameRunner

    model = spec if isinstance(spec, FrameModel) else load_frame_model(spec)
    return FrameRunner(make_backend(model, backend, device, precision, threads),
                       tile=tile, overlap=overlap, batch=batch)


class ImagePreprocessor:
    """A callable HxWx3 uint8 RGB -> HxWx3 uint8 RGB around a :class:`FrameRunner`."""

    def __init__(self, runner: FrameRunner, name: str = ""):
        self.runner, self.name = runner, name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from gencodec.imageio import as_rgb_uint8

        return self.runner(as_rgb_uint8(image))

    def __repr__(self) -> str:
        return f"<ImagePreprocessor {self.name}: {self.runner.describe()}>"


def load_preprocessor(spec: str, **kw):
    """A callable on one HxWx3 uint8 RGB image returning HxWx3 uint8 RGB.

    ``spec`` is a model directory, registry id or hub id (keyword arguments go to
    :func:`make_runner`: backend, device, precision, tile, overlap, batch), or one of
    :data:`CLASSIC_FILTERS` (FFmpeg's filters, through :mod:`gencodec.filters.classic`;
    keyword arguments are the filter's options). Unknown specs raise InputError."""
    if not spec:
        from gencodec.filters.model import NO_MODEL_MESSAGE

        raise InputError(NO_MODEL_MESSAGE)
    if is_classic(str(spec)):
        return load_classic(str(spec), **kw)
    return ImagePreprocessor(make_runner(spec, **kw), str(spec))


__all__ = ["CLASSIC_FILTERS", "CompactFilterNet", "FrameModel", "FrameRunner",
           "ImagePreprocessor", "OneStepDiffusion", "PreprocessFilter", "load_frame_model",
           "load_preprocessor", "make_runner", "transcode"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"gencodec.filters.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'gencodec.filters' has no attribute {name!r}")
