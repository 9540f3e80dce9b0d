"""``gencodec demo``: plain vs preprocessed bpg, webp and jpeg on a photo, with and
without a preprocessing model (tiny compact models built in the tests stand in for the
trained default)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gencodec.cli import demo
from gencodec.cli.main import main
from gencodec.eval.metrics import METRICS
from gencodec.models import DEFAULT_PREPROCESSOR, MODELS

ROWS = sum(len(q) for q in demo.DEMO_QUALITIES.values())  # 12 settings


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, match):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gencodec: error: "), err
    assert match in lines[0], lines[0]


@pytest.fixture()
def small_photo(monkeypatch):
    """A 176x176 crop of the bundled photo: MS-SSIM needs 161 pixels a side."""
    skimage = pytest.importorskip("skimage")
    photo = np.ascontiguousarray(skimage.data.astronaut()[:176, 120:296])
    monkeypatch.setattr(demo, "bundled_photo", lambda: photo)
    return photo


@pytest.fixture()
def no_default(monkeypatch):
    monkeypatch.delitem(MODELS, DEFAULT_PREPROCESSOR, raising=False)


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    """A compact model with zero weights: its global skip makes it the identity."""
    import torch

    from gencodec.filters.compact import CompactFilterNet

    model = CompactFilterNet(channels=4, blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    d = tmp_path_factory.mktemp("identity")
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    from gencodec.filters.tiny import tiny_compact

    d = tmp_path_factory.mktemp("registry") / DEFAULT_PREPROCESSOR
    tiny_compact(seed=5).save_pretrained(d)
    return d


def _register(monkeypatch, folder: Path, sha256: str | None = None) -> None:
    weights = folder / "model.safetensors"
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, {
        "architecture": "compact", "path": str(folder), "weights": str(weights),
        "sha256": sha256 or hashlib.sha256(weights.read_bytes()).hexdigest(),
        "licence": "test", "card": str(folder / "README.md")})


def _table_rows(out: str, kind: str) -> list[str]:
    return [ln for ln in out.splitlines()
            if ln.split()[:1] and ln.split()[0] in demo.DEMO_CODECS and f" {kind} " in ln]


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_crop_box_stays_inside_and_is_square():
    for shape in [(512, 512, 3), (176, 176, 3), (40, 300, 3), (12, 12, 3)]:
        rows, cols = demo.crop_box(shape)
        assert rows.stop - rows.start == cols.stop - cols.start
        assert 0 <= rows.start < rows.stop <= shape[0] and 0 <= cols.start < cols.stop <= shape[1]
    rows, cols = demo.crop_box((512, 512, 3))
    assert (rows.start, cols.start, rows.stop - rows.start) == (20, 138, 164)


@pytest.mark.slow
def test_without_a_default_model_the_stock_comparison_runs_and_says_so(
        capsys, tmp_path, small_photo, no_default):
    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--out", out_dir)
    assert rc == 0 and err == "", err  # no progress bar outside a terminal
    notes = [ln for ln in out.splitlines() if "no default preprocessing model" in ln]
    assert len(notes) == 1 and "stock comparison only" in notes[0]
    assert len(_table_rows(out, "plain")) == ROWS and not _table_rows(out, "preprocessed")
    assert "BD-rate" not in out
    doc = json.loads((out_dir / "demo.json").read_text())
    assert doc["model"] is None and doc["note"] == notes[0] and doc["bd_rate"] == {}
    for codec, qualities in demo.DEMO_QUALITIES.items():
        pts = doc["results"][codec]["plain"]
        assert "preprocessed" not in doc["results"][codec]
        qname = "qp" if codec == "bpg" else "quality"
        assert sorted(p[qname] for p in pts) == sorted(qualities)
        for metric in demo.DEMO_METRICS:  # rate and every metric get better together
            values = [p[metric] for p in pts]
            rising = METRICS[metric].higher_is_better
            assert np.all(np.isfinite(values)), (codec, metric)
            assert values == sorted(values, reverse=not rising), (codec, metric)
        assert all(p["bpp_stream"] > p["bpp"] for p in pts)  # + the container header
    w, h = _png_size(out_dir / "rd_curves.png")
    assert w >= 800 and h >= 600
    assert _png_size(out_dir / "crops.png")[0] < 800  # two columns: original, plain
    assert len(doc["crops"]) == 3 and all("preprocessed" not in c for c in doc["crops"])
    # outputs are not overwritten without --force
    rc, _, err = run(capsys, "demo", "--out", out_dir)
    assert_one_line_error(rc, err, "exists (use --force to overwrite)")


@pytest.mark.slow
def test_identity_model_gives_the_plain_points_and_zero_bd_rate(
        capsys, tmp_path, small_photo, identity_dir):
    """A model that changes nothing must reproduce the plain curves exactly: the demo
    really encodes the model's output and computes BD-rate from it."""
    from gencodec.eval.runner import preprocessor_identity

    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--out", out_dir, "--model", identity_dir)
    assert rc == 0, err
    assert "no default preprocessing model" not in out
    assert len(_table_rows(out, "plain")) == len(_table_rows(out, "preprocessed")) == ROWS
    doc = json.loads((out_dir / "demo.json").read_text())
    assert doc["model"]["identity"] == preprocessor_identity(str(identity_dir))
    for codec in demo.DEMO_CODECS:
        assert doc["results"][codec]["preprocessed"] == doc["results"][codec]["plain"]
        for metric in demo.DEMO_METRICS:
            assert doc["bd_rate"][codec][metric]["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    for crop in doc["crops"]:  # the same image: the rate search lands on the same setting
        assert crop["preprocessed"]["quality"] == crop["plain"]["quality"]
        assert crop["preprocessed"]["bpp"] == crop["plain"]["bpp"]
    assert _png_size(out_dir / "crops.png")[0] >= 1000  # three columns


@pytest.mark.slow
def test_the_registry_default_is_used_without_model(capsys, tmp_path, small_photo,
                                                    random_dir, monkeypatch):
    _register(monkeypatch, random_dir)
    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--out", out_dir, "--jobs", "2")  # worker processes
    assert rc == 0, err
    assert f"preprocessing model: {DEFAULT_PREPROCESSOR} ({random_dir};" in out
    doc = json.loads((out_dir / "demo.json").read_text())
    assert doc["model"]["name"] == DEFAULT_PREPROCESSOR
    assert doc["model"]["path"] == str(random_dir) and doc["note"] == ""
    for codec in demo.DEMO_CODECS:  # random weights change the photo, so every point
        plain, pre = doc["results"][codec]["plain"], doc["results"][codec]["preprocessed"]
        assert all(a["bpp"] != b["bpp"] for a, b in zip(plain, pre))
        assert set(doc["bd_rate"][codec]) == set(demo.DEMO_METRICS)
        for cell in doc["bd_rate"][codec].values():  # a number, or None with the reason
            assert cell["note"] if cell["bd_rate"] is None else np.isfinite(cell["bd_rate"])
    assert all("preprocessed" in crop for crop in doc["crops"])
    assert _png_size(out_dir / "crops.png")[0] >= 1000  # three columns


@pytest.mark.slow
def test_the_shipped_default_makes_the_demo(capsys, tmp_path, small_photo):
    """No --model and no stand-in: the demo runs the trained weights shipped in
    models/ (sha256 checked), and they spend fewer bits than the plain codec at every
    bpg and webp setting of the demo."""
    from gencodec.eval.runner import preprocessor_identity
    from gencodec.models import default_preprocessor_path

    shipped = default_preprocessor_path()
    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--out", out_dir)
    assert rc == 0, err
    assert f"preprocessing model: {DEFAULT_PREPROCESSOR} ({shipped};" in out
    doc = json.loads((out_dir / "demo.json").read_text())
    assert doc["model"]["path"] == str(shipped)
    assert doc["model"]["identity"] == preprocessor_identity(str(shipped))
    for codec in ("bpg", "webp"):
        plain, pre = doc["results"][codec]["plain"], doc["results"][codec]["preprocessed"]
        assert len(plain) == len(pre) == 4
        assert all(b["bpp"] < a["bpp"] for a, b in zip(plain, pre)), codec
        assert all(np.isfinite(c["bd_rate"]) for c in doc["bd_rate"][codec].values())


def test_a_damaged_default_is_refused_not_skipped(capsys, tmp_path, small_photo,
                                                  random_dir, monkeypatch):
    _register(monkeypatch, random_dir, sha256="f" * 64)
    out_dir = tmp_path / "demo"
    rc, _, err = run(capsys, "demo", "--out", out_dir)
    assert_one_line_error(rc, err, f"{DEFAULT_PREPROCESSOR}: ")
    assert "damaged install" in err
    assert list(out_dir.iterdir()) == []  # refused before any work


def test_model_none_and_bad_models_and_jobs(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "bundled_photo", lambda: pytest.fail("no work expected"))
    rc, _, err = run(capsys, "demo", "--out", tmp_path / "d", "--model", tmp_path / "nowhere")
    assert_one_line_error(rc, err, "no such directory, registry id or hub id")
    rc, _, err = run(capsys, "demo", "--out", tmp_path / "d", "--jobs", "0")
    assert_one_line_error(rc, err, "--jobs 0: must be at least 1")
    model, label, note = demo.resolve_model("none")
    assert model is None and note.startswith("note: --model none:")
    assert "stock comparison only" in note


@pytest.mark.slow
def test_progress_bar_stays_out_of_logs_and_write_errors_name_the_file(
        capsys, tmp_path, monkeypatch, no_default):
    """stderr redirected to a log got the progress bar; a full disk gave a bare errno."""
    skimage = pytest.importorskip("skimage")
    monkeypatch.setattr(demo, "bundled_photo",
                        lambda: np.ascontiguousarray(skimage.data.astronaut()[:32, :48]))
    rc, out, err = run(capsys, "demo", "--out", tmp_path / "d", "--model", "none")
    assert rc == 0 and err == ""  # capsys's stderr is not a terminal: no bar
    assert "n/a" in out  # MS-SSIM does not fit a 32x48 photo: shown, not crashed
    real_write_bytes = Path.write_bytes

    def full(self, data):
        real_write_bytes(self, data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    rc, _, err = run(capsys, "demo", "--out", tmp_path / "d", "--force", "--model", "none")
    assert_one_line_error(rc, err, f"{tmp_path / 'd' / 'demo.json'}: cannot "
                                   "write: No space left on device")
