"""Exporters: TorchScript for FFmpeg's ``dnn_processing`` LibTorch back end, and ONNX.

Both wrap the model in :class:`PadCrop`, so the exported graph takes any H and W:

    forward(x): x float32 RGB, N x 3 x H x W in [0, 1]  ->  the same layout and size

which is FFmpeg's LibTorch contract (``dnn_backend=torch``: batch 1, NCHW float RGB
scaled to [0, 1], output read back the same way). The ONNX graph has dynamic N, H and
W, input ``input`` and output ``output``, and carries the model's multiple and
receptive field in its metadata for :class:`~gencodec.filters.backends.OrtBackend`.

Export runs in float32 on the CPU; whole-frame inference (no tiling) is what FFmpeg
runs, so very large frames need the memory of the whole frame.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from gencodec.errors import InputError
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
        return y[:, :, :h, :w]


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


def export_onnx(model: FrameModel, path: str | os.PathLike, opset: int = 18,
                dynamo: bool = True) -> Path:
    """Write an ONNX model with dynamic batch, height and width; returns the path.

    ``dynamo=True`` uses the dynamo exporter (``torch.export`` with dynamic shapes) and
    falls back to the TorchScript-based exporter (``dynamic_axes``) when dynamo cannot
    trace the model; ``dynamo=False`` goes straight to the latter, which gives the same
    graph numerically and exports diffusers models about 9x faster."""
    model = model.float().cpu().eval()
    wrapper = PadCrop(model, model.multiple).eval()
    path = Path(path)
    x = _example(model, batch=2)
    attempts = ([("dynamo", _onnx_dynamo)] if dynamo else []) + [("legacy", _onnx_legacy)]
    errors = []
    for name, fn in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(wrapper, x, path, opset)
            break
        except Exception as exc:  # noqa: BLE001 - try the next exporter
            errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
    else:
        raise InputError("ONNX export failed: " + "; ".join(errors))
    _set_metadata(path, {"gencodec_multiple": str(model.multiple),
                         "gencodec_receptive_field": str(model.receptive_field),
                         "gencodec_architecture": model.architecture,
                         "gencodec_contract": "float32 RGB NCHW in [0,1] -> same"})
    return path


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


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
