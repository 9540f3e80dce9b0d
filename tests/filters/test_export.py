"""Exports: TorchScript (FFmpeg's LibTorch contract) and ONNX match PyTorch on two
sizes, neither a multiple of the model's; large ONNX models keep their weights in
<name>.data beside the graph; nothing is overwritten without force."""

from __future__ import annotations

import pytest
import torch

from gencodec.cli.main import main
from gencodec.errors import OutputExistsError
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
def test_onnx_matches_pytorch(which, dynamo, compact_dir, onestep_dir, tmp_path, capfd):
    ort = pytest.importorskip("onnxruntime")
    model = load_frame_model(compact_dir if which == "compact" else onestep_dir)
    capfd.readouterr()
    path = export_onnx(model, tmp_path / "filter.onnx", dynamo=dynamo)
    # the dynamo exporter's four "torchvision is not installed" warnings are dropped
    assert "torchvision" not in capfd.readouterr().err
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["gencodec_multiple"] == str(model.multiple)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    for n, (h, w) in zip((1, 2), SIZES):
        x = torch.rand(n, 3, h, w)
        (y,) = sess.run(None, {"input": x.numpy()})
        assert y.shape == tuple(x.shape)
        assert abs(y - _reference(model, x).numpy()).max() < 1e-3


def _external_locations(path):
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [{e.key: e.value for e in t.external_data}["location"]
            for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def _check_session(path, model):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w)
        (y,) = sess.run(None, {"input": x.numpy()})
        assert abs(y - _reference(model, x).numpy()).max() < 1e-3


def test_onnx_external_data(compact_dir, tmp_path, monkeypatch):
    """Weights over the threshold go to <name>.data, referenced by that name from the
    final graph (not from the temporary one it was staged as)."""
    pytest.importorskip("onnxruntime")
    model = load_frame_model(compact_dir)
    out = tmp_path / "out"
    out.mkdir()
    path = export_onnx(model, out / "filter.onnx", dynamo=False, external_data_threshold=0)
    assert sorted(p.name for p in out.iterdir()) == ["filter.onnx", "filter.onnx.data"]
    locations = _external_locations(path)
    assert len(locations) >= 2 and set(locations) == {"filter.onnx.data"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the data is found beside the graph, not in the cwd
    _check_session(path.resolve(), model)

    with pytest.raises(OutputExistsError):
        export_onnx(model, path, dynamo=False)
    (out / "filter.onnx").unlink()  # a stray <name>.data alone also needs force
    with pytest.raises(OutputExistsError):
        export_onnx(model, path, dynamo=False)
    # a small model with force: one self-contained file, the stale weights removed
    export_onnx(model, path, dynamo=False, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["filter.onnx"]
    assert _external_locations(path) == []
    _check_session(path, model)


def test_onnx_weights_written_by_the_exporter_are_gathered(compact_dir, tmp_path,
                                                            monkeypatch):
    """torch.onnx writes a >2 GB model's weights beside the file it is given, under its
    own names; they are read back and no file of theirs is left."""
    onnx = pytest.importorskip("onnx")
    from gencodec.filters import export

    legacy = export._onnx_legacy

    def exports_external_data(wrapper, x, path, opset):
        legacy(wrapper, x, path, opset)
        onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True,
                  all_tensors_to_one_file=False, size_threshold=0)

    monkeypatch.setattr(export, "_onnx_legacy", exports_external_data)
    model = load_frame_model(compact_dir)
    path = export_onnx(model, tmp_path / "filter.onnx", dynamo=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filter.onnx"]
    assert _external_locations(path) == []
    _check_session(path, model)


def test_export_cli_onnx_external_data_and_no_clobber(compact_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "filter.onnx"
    data = tmp_path / "filter.onnx.data"
    argv = ["export", "--model", str(compact_dir), "--format", "onnx", "--onnx-exporter",
            "legacy", "-o", str(out)]
    assert main(argv + ["--external-data-threshold", "0"]) == 0
    assert f"weights in {data}" in capsys.readouterr().out
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, data)}
    assert main(argv) == 2  # exists, no --force: both files untouched, nothing added
    assert "exists" in capsys.readouterr().err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, data)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filter.onnx", "filter.onnx.data"]
    assert main(argv + ["--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filter.onnx"]
    _check_session(out, load_frame_model(compact_dir))
