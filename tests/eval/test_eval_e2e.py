"""End to end: 'gencodec eval' on two small scikit-image photos with two codecs and a
classic preprocessor writes JSON, CSV, plots and BD-rate tables; 'gencodec report'
writes the page; a rerun resumes without recomputing."""

import csv
import json

import pytest

from gencodec.cli.main import main
from gencodec.eval import runner

pytest.importorskip("skimage")

ARGS = ["eval", "--images", "skimage:astronaut,coffee", "--crop", "176",
        "--codecs", "jpeg,webp", "--preprocess", "none,gblur",
        "--qualities", "jpeg=20,40,60,80", "--qualities", "webp=20,40,60,80",
        # the slow weight-free metrics (FSIM, VSI, HaarPSI) are covered in test_metrics
        "--metrics", "psnr-rgb,psnr-y,ms-ssim,gmsd,lpips-alex,dists,topiq-fr"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "results"
    home = tmp_path_factory.mktemp("torch-home")  # no weights: learned metrics unavailable
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(home))
    assert main([*ARGS, "--out", str(out), "--jobs", "2"]) == 0
    yield out
    mp.undo()


def test_writes_compressai_json(results):
    names = sorted(p.stem for p in (results / "json").glob("*.json"))
    assert names == ["gblur+jpeg", "gblur+webp", "jpeg", "webp"]
    doc = json.loads((results / "json" / "gblur+jpeg.json").read_text())
    assert doc["name"] == "gblur+jpeg" and "gblur" in doc["description"]
    res = doc["results"]
    assert len(res["bpp"]) == len(res["psnr-rgb"]) == len(res["ms-ssim"]) == 4
    assert res["bpp"] == sorted(res["bpp"])
    assert res["lpips-alex"] == "unavailable (no local weights)"
    assert res["dists"] == "unavailable (no local weights)"


def test_writes_csv_of_every_point(results):
    with open(results / "points.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 * 4  # images x preprocessors x codecs x qualities
    row = rows[0]
    for col in ("image", "preprocess", "codec", "quality", "bpp", "psnr-rgb", "psnr-y",
                "ms-ssim", "gmsd", "encoding_time", "decoding_time"):
        assert row[col] not in ("", None), col
    assert row["topiq-fr"] == "unavailable (no local weights)"


def test_writes_plot_and_bd_tables(results):
    assert (results / "rd_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bd = json.loads((results / "bdrate.json").read_text())
    assert [c["codec"] for c in bd["columns"]] == ["jpeg", "webp"]
    psnr_row = next(r for r in bd["rows"] if r["metric"] == "psnr-rgb")
    for cell in psnr_row["cells"]:  # blurring costs PSNR: a number, or a note saying why not
        assert isinstance(cell["bd_rate"], float) or cell["note"]
    md = (results / "bdrate.md").read_text()
    assert "| Dataset | Metric | JPEG gblur | WEBP gblur |" in md


def test_report_embeds_tables_and_plots(results, capsys):
    assert main(["report", str(results)]) == 0
    page = (results / "report.md").read_text()
    assert "## BD-rate" in page and "| Dataset | Metric |" in page
    assert "![R-D curves per metric](rd_curves.png)" in page
    assert "unavailable (no local weights)" in page


def test_rerun_resumes_without_recomputing(results, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("recomputed a finished task")

    monkeypatch.setattr(runner, "run_task", fail)
    stamp = {p: p.stat().st_mtime_ns for p in (results / "points").rglob("*.json")}
    assert main([*ARGS, "--out", str(results), "--jobs", "1"]) == 0
    assert "4 of 4" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp


def test_interrupted_run_computes_only_what_is_missing(results, monkeypatch, capsys):
    lost = results / "points" / "gblur" / "webp" / "coffee.json"
    kept = results / "points" / "gblur" / "jpeg" / "coffee.json"
    points = json.loads(lost.read_text())["points"]
    lost.unlink()  # as if the run stopped before this codec finished
    before = kept.stat().st_mtime_ns
    assert main([*ARGS, "--out", str(results), "--jobs", "1"]) == 0
    assert "3 of 4" in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == before
    redone = json.loads(lost.read_text())["points"]
    assert [p["bytes"] for p in redone] == [p["bytes"] for p in points]  # deterministic


def test_points_of_another_crop_are_not_reused(results):
    from gencodec.eval.images import ImageSource

    def task(crop):
        return runner.Task(ImageSource("coffee", skimage="coffee", crop=crop), "none",
                           ("jpeg",), (("jpeg", (20, 40)),), ("psnr-rgb",), str(results))

    assert task(176).missing(["psnr-rgb"]) == {}
    assert task(128).missing(["psnr-rgb"]) == {"jpeg": [20, 40]}
