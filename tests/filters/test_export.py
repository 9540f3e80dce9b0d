"""Exports: TorchScript (FFmpeg's LibTorch contract) and ONNX match PyTorch on two
sizes, neither a multiple of the model's."""

from __future__ import annotations

import pytest
import torch

from gencodec.filters import load_frame_model
from gencodec.filters.export import PadCrop, export_onnx, export_torchscript

SIZES = [(37, 50), (64, 90)]


def _reference(model, x):
    with torch.no_grad():
        return PadCrop(model, model.multiple)(x)


@pytest.mark.parametrize("which", ["compact", "onestep"])
def test_torchscript_matches_pytorch(which, compact_dir, onestep_dir, tmp_path):
    model = load_frame_model(compact_dir if which == "compact" else onestep_dir)
    path = export_torchscript(model, tmp_path / "filter.pt")
    module = torch.jit.load(str(path))
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w)  # FFmpeg's contract: batch 1, NCHW float RGB [0, 1]
        with torch.no_grad():
            y = module(x)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert (y - _reference(model, x)).abs().max().item() < 1e-3


@pytest.mark.parametrize("which,dynamo", [("compact", True), ("compact", False),
                                          ("onestep", False)])
def test_onnx_matches_pytorch(which, dynamo, compact_dir, onestep_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = load_frame_model(compact_dir if which == "compact" else onestep_dir)
    path = export_onnx(model, tmp_path / "filter.onnx", dynamo=dynamo)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["gencodec_multiple"] == str(model.multiple)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    for n, (h, w) in zip((1, 2), SIZES):
        x = torch.rand(n, 3, h, w)
        (y,) = sess.run(None, {"input": x.numpy()})
        assert y.shape == tuple(x.shape)
        assert abs(y - _reference(model, x).numpy()).max() < 1e-3
