"""Exporters: TorchScript for FFmpeg's ``dnn_processing`` LibTorch back end, and ONNX.

Both wrap the model in :class:`PadCrop`, so the exported graph takes any H and W:

    forward(x): x float32 RGB, N x 3 x H x W in [0, 1]  ->  the same layout and size

which is FFmpeg's LibTorch contract (``dnn_backend=torch``: batch 1, NCHW float RGB
scaled to [0, 1], output read back the same way). The ONNX graph has dynamic N, H and
W, input ``input`` and output ``output``, and carries the model's multiple and
receptive field in its metadata for :class:`~gencodec.filters.backends.OrtBackend`;
over protobuf's 2 GB limit (an SD-sized UNet) its weights go to ``<name>.data`` beside it.

Export runs in float32 on the CPU; whole-frame inference (no tiling) is what FFmpeg
runs, so very large frames need the memory of the whole frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from gencodec.errors import InputError
from gencodec.imageio import atomic_output, check_output
from gencodec.filters.model import FrameModel


class PadCrop(torch.nn.Module):
    """Pad H and W up to ``multiple`` (edge replication), run ``inner``, crop back."""

    def __init__(self, inner: torch.nn.Module, multiple: int):
        super().__init__()
        self.inner = inner
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        ph = (self.multiple - h % self.multiple) % self.multiple
        pw = (self.multiple - w % self.multiple) % self.multiple
        y = self.inner(F.pad(x, [0, pw, 0, ph], mode="replicate"))
        # contiguous: FFmpeg's LibTorch back end reads the output's memory as dense NCHW
        return y[:, :, :h, :w].contiguous()


def _example(model: FrameModel, batch: int = 1) -> torch.Tensor:
    side = max(2 * model.multiple, 64)
    # batch > 1 for ONNX: torch.export specialises dimensions whose example is 1
    return torch.rand(batch, 3, side, side + model.multiple)


def export_torchscript(model: FrameModel, path: str | os.PathLike) -> Path:
    """Write a TorchScript module (FFmpeg ``dnn_backend=torch``); returns the path.

    The model is scripted when it can be (``model.scriptable``: the compact network)
    and traced at a sample size otherwise (diffusers models); the pad-and-crop wrapper
    is always scripted so that the padding follows each frame's size."""
    model = model.float().cpu().eval()
    if model.scriptable:
        inner = torch.jit.script(model)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = torch.jit.trace(model, _example(model), check_trace=False)
    scripted = torch.jit.script(PadCrop(inner, model.multiple))
    path = Path(path)
    scripted.save(str(path))
    return path


def onnx_data_path(path: str | os.PathLike) -> Path:
    """Where :func:`export_onnx` keeps the weights of a large model: ``<path>.data``."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def export_onnx(model: FrameModel, path: str | os.PathLike, opset: int = 18,
                dynamo: bool = True, *, force: bool = False,
                external_data_threshold: int | None = None) -> Path:
    """Write an ONNX model with dynamic batch, height and width; returns the path.

    ``dynamo=True`` uses the dynamo exporter (``torch.export`` with dynamic shapes) and
    falls back to the TorchScript-based exporter (``dynamic_axes``) when dynamo cannot
    trace the model; ``dynamo=False`` goes straight to the latter, which gives the same
    graph numerically and exports diffusers models about 9x faster.

    A model over ``external_data_threshold`` bytes (default: protobuf's 2 GB limit, which
    an SD-sized UNet passes) keeps its weights in one file beside the graph,
    :func:`onnx_data_path` (``<name>.data``), which the graph names relative to itself:
    ONNX Runtime and FFmpeg find it as long as the two stay side by side. Everything is
    staged in a temporary folder beside ``path`` and moved into place (the weights
    first), so no half-written or wrongly named file is ever left. Existing files, either
    of the two, need ``force``; with it, a ``<name>.data`` of an earlier, larger export
    is removed when the new model does not need one."""
    import onnx

    data = onnx_data_path(path)
    path = Path(path)
    for out in (path, data):
        check_output(out, force)  # before the (slow) export
    limit = onnx.checker.MAXIMUM_PROTOBUF if external_data_threshold is None \
        else int(external_data_threshold)
    model = model.float().cpu().eval()
    wrapper = PadCrop(model, model.multiple).eval()
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", suffix=".part",
                                     dir=path.parent) as stage:
        # the exporters write a large model's weights beside the file they are given,
        # under names of their own: export in a folder of its own, then read it all back
        raw = Path(stage) / "raw" / "model.onnx"
        raw.parent.mkdir()
        _export_graph(wrapper, _example(model, batch=2), raw, opset, dynamo)
        proto = onnx.load(str(raw))
        shutil.rmtree(raw.parent)
        for key, value in {"gencodec_multiple": str(model.multiple),
                           "gencodec_receptive_field": str(model.receptive_field),
                           "gencodec_architecture": model.architecture,
                           "gencodec_contract": "float32 RGB NCHW in [0,1] -> same"}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        staged = Path(stage) / path.name
        onnx.save(proto, str(staged), save_as_external_data=proto.ByteSize() > limit,
                  all_tensors_to_one_file=True, location=data.name)
        del proto
        external = (Path(stage) / data.name).is_file()  # not if every tensor is tiny
        with contextlib.ExitStack() as moves:  # leaves in reverse: the weights first
            tmp_graph = moves.enter_context(atomic_output(path, force))
            if external:
                os.replace(Path(stage) / data.name,
                           moves.enter_context(atomic_output(data, force)))
            os.replace(staged, tmp_graph)
    if not external and force and data.is_file():
        data.unlink()
    return path


class _NoTorchvisionNotes(logging.Filter):
    """Drops the dynamo exporter's "torchvision is not installed. Skipping
    torchvision::nms" warnings (one per torchvision operator, logged while it builds its
    operator table): no gencodec model uses torchvision operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def _quiet_exporter():
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    note_filter = _NoTorchvisionNotes()
    log.addFilter(note_filter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.removeFilter(note_filter)


def _export_graph(wrapper: torch.nn.Module, x: torch.Tensor, path: Path, opset: int,
                  dynamo: bool) -> None:
    attempts = ([("dynamo", _onnx_dynamo)] if dynamo else []) + [("legacy", _onnx_legacy)]
    errors = []
    for name, fn in attempts:
        try:
            with _quiet_exporter():
                fn(wrapper, x, path, opset)
            return
        except Exception as exc:  # noqa: BLE001 - try the next exporter
            errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
            shutil.rmtree(path.parent)  # whatever the failed exporter left
            path.parent.mkdir()
    raise InputError("ONNX export failed: " + "; ".join(errors))


def _onnx_dynamo(wrapper: torch.nn.Module, x: torch.Tensor, path: Path, opset: int) -> None:
    from torch.export import Dim

    dyn = {"x": {0: Dim("batch", min=1, max=64), 2: Dim("height", min=1, max=16384),
                 3: Dim("width", min=1, max=16384)}}
    prog = torch.onnx.export(wrapper, (x,), dynamo=True, dynamic_shapes=dyn,
                             input_names=["input"], output_names=["output"],
                             opset_version=opset, verbose=False)
    prog.save(str(path))


def _onnx_legacy(wrapper: torch.nn.Module, x: torch.Tensor, path: Path, opset: int) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(wrapper, (x,), str(path), dynamo=False, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": axes, "output": axes},
                      opset_version=opset)
