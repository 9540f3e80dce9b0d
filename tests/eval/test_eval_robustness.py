"""'gencodec eval' and 'gencodec report' on what users get wrong and what crashes leave:
bad names refused before any work, hidden files in an image folder, damaged resume
state, partial results, and two runs into one folder."""

import json

import numpy as np
import pytest
from PIL import Image

from gencodec.cli.main import main
from gencodec.errors import InputError
from gencodec.eval import runner
from gencodec.eval.images import find_images

ARGS = ["--codecs", "jpeg", "--qualities", "jpeg=20,40,60,80", "--metrics", "psnr-rgb",
        "--jobs", "1"]


@pytest.fixture
def images(tmp_path):
    """Two small photos of different sizes (one grayscale) and the clutter real folders
    hold: a text file, a macOS resource fork, a sub-folder with an image suffix."""
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 255, (33, 47), dtype=np.uint8)).save(d / "b.png")
    (d / "notes.txt").write_text("not an image")
    (d / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (d / "more.png").mkdir()
    return d


def _run(images, out, *extra):
    return main(["eval", "--images", str(images), "--out", str(out), *ARGS, *extra])


@pytest.mark.parametrize("extra,message", [
    (["--codecs", "jpgg"], "unknown codec 'jpgg'"),
    (["--codecs", ","], "--codecs: no codec named"),
    (["--qualities", "jpeg="], "no settings after the '='"),
    (["--preprocess", "none,no-such-model"], "model 'no-such-model': no such directory"),
])
def test_bad_names_are_refused_before_any_work(images, tmp_path, capsys, extra, message):
    out = tmp_path / "res"
    assert _run(images, out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_quality_names_may_have_spaces():
    assert runner.parse_qualities(["jpeg = 30, 50,70,90"], ["jpeg", "webp"]) == {
        "jpeg": [30, 50, 70, 90], "webp": runner.DEFAULT_QUALITIES["webp"]}
    # a setting given twice is one point (it made a curve go back on itself)
    assert runner.parse_qualities(["30,50,30.0,70"], ["jpeg"]) == {"jpeg": [30, 50, 70]}


def test_hidden_files_and_folders_are_not_images(images):
    sources, _ = find_images(str(images))
    assert [s.name for s in sources] == ["a", "b"]


@pytest.mark.slow  # two runs and two reports: ~4 s
def test_damaged_resume_state_is_redone(images, tmp_path, capsys):
    out = tmp_path / "res"
    assert _run(images, out) == 0
    a = out / "points" / "none" / "jpeg" / "a.json"
    good = json.loads(a.read_text())["points"]
    a.write_text(a.read_text()[:70])  # a file cut short (written by hand, a full disk)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # skipped, and the page says so
    page = (out / "report.md").read_text()
    assert "**Incomplete**: 4 of 8 points" in page
    assert _run(images, out) == 0  # the rerun redoes it
    assert [p["bytes"] for p in json.loads(a.read_text())["points"]] == \
        [p["bytes"] for p in good]
    assert main(["report", str(out)]) == 0
    assert "Incomplete" not in (out / "report.md").read_text()


def test_report_on_empty_and_damaged_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no run.json here" in capsys.readouterr().err
    (tmp_path / "run.json").write_text('{"dataset": "x", "ima')  # cut short
    assert main(["report", str(tmp_path)]) == 2
    assert "run.json: damaged" in capsys.readouterr().err


@pytest.mark.slow  # a run with a filter and the plots: ~4 s
def test_partial_results_are_flagged_in_bd_rates(images, tmp_path):
    out = tmp_path / "res"
    assert _run(images, out, "--preprocess", "none,gblur") == 0
    (out / "points" / "gblur" / "jpeg" / "b.json").unlink()  # a run stopped here
    from gencodec.eval.summary import INCOMPLETE, summarize

    s = summarize(out)
    assert (s["missing"], s["expected"]) == (4, 16)
    cell = next(r for r in s["bd"]["rows"] if r["metric"] == "psnr-rgb")["cells"][0]
    assert INCOMPLETE in cell["note"]


def test_a_second_run_into_the_same_folder_is_refused(images, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    with runner.exclusive(out):  # a run in progress (in another process, in real life)
        part = out / "points" / ".a.json.x.part.json"
        part.parent.mkdir()
        part.write_text("{}")  # its temporary file: not to be deleted under it
        with pytest.raises(InputError, match="another gencodec eval is writing"):
            runner.evaluate(find_images(str(images))[0], ["jpeg"], ["none"], out,
                            qualities={"jpeg": [20, 40, 60, 80]}, metrics=["psnr-rgb"],
                            dataset="d", jobs=1, progress=False)
        assert part.exists() and not (out / "run.json").exists()
    assert _run(images, out) == 0  # free again once the first run ends


def test_retrained_model_in_the_same_folder_is_new_work(images, tmp_path, capsys):
    """Results are keyed by the model's contents, not its folder name: after the
    weights in a model folder change, a rerun recomputes instead of reusing points."""
    from gencodec.filters.tiny import tiny_compact

    model = tmp_path / "model"
    tiny_compact(seed=1).save_pretrained(model)
    out = tmp_path / "res"
    first_id = runner.preprocessor_identity(str(model))
    assert first_id.startswith(f"{model}@sha256:")
    assert runner.preprocessor_identity(str(model)) == first_id  # stable
    assert runner.preprocessor_identity("nlmeans:s=5") == "nlmeans:s=5"
    assert _run(images, out, "--preprocess", f"none,{model}") == 0
    points = out / "points" / runner.slug(str(model)) / "jpeg" / "a.json"
    before = json.loads(points.read_text())
    assert before["preprocess_id"] == first_id
    capsys.readouterr()
    assert _run(images, out, "--preprocess", f"none,{model}") == 0  # same weights: resumed
    assert "4 of 4 image x preprocessor tasks already done" in capsys.readouterr().out
    tiny_compact(seed=2).save_pretrained(model)  # retrained, same folder
    assert runner.preprocessor_identity(str(model)) != first_id
    assert _run(images, out, "--preprocess", f"none,{model}") == 0
    after = json.loads(points.read_text())
    assert after["preprocess_id"] == runner.preprocessor_identity(str(model))
    assert [p["bytes"] for p in after["points"]] != [p["bytes"] for p in before["points"]]


# -- issue 10 (part B) -------------------------------------------------------------------------

@pytest.mark.slow  # four small runs with summaries and plots: ~5 s
def test_another_configuration_into_the_same_folder_is_refused_or_replaced(images, tmp_path,
                                                                           capsys):
    """A second run with other settings silently replaced run.json, points.csv and the
    plots but left the first run's json/<config>.json files: report and folder
    disagreed. It is refused, saying what changed; --force replaces the results."""
    out = tmp_path / "res"
    assert _run(images, out, "--codecs", "jpeg,webp", "--qualities", "20,40,60,80") == 0
    assert sorted(p.name for p in (out / "json").iterdir()) == ["jpeg.json", "webp.json"]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _run(images, out, "--qualities", "jpeg=20,40,60,90") == 2
    err = capsys.readouterr().err
    assert "holds the results of another configuration (codecs jpeg,webp -> jpeg; " \
           "qualities)" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _run(images, out, "--qualities", "jpeg=20,40,60,90", "--force") == 0
    assert [p.name for p in (out / "json").iterdir()] == ["jpeg.json"]
    assert not (out / "points" / "none" / "webp").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["codecs"] == ["jpeg"] and run["qualities"] == {"jpeg": [20, 40, 60, 90]}
    rows = (out / "points.csv").read_text().splitlines()[1:]
    assert len(rows) == 8 and {r.split(",")[4] for r in rows} == {"20", "40", "60", "90"}
    capsys.readouterr()
    assert _run(images, out, "--qualities", "jpeg=20,40,60,90") == 0  # same: resumes
    assert "2 of 2 image x preprocessor tasks already done" in capsys.readouterr().out


def test_a_codec_named_twice_is_run_once(images, tmp_path):
    """``--codecs jpeg,jpeg`` computed, wrote and plotted everything twice."""
    out = tmp_path / "res"
    assert main(["eval", "--images", str(images), "--out", str(out), "--codecs", "jpeg,jpeg",
                 "--qualities", "20,40,60,80", "--metrics", "psnr-rgb,psnr-rgb",
                 "--jobs", "1"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["codecs"] == ["jpeg"] and run["metrics"] == ["psnr-rgb"]
    assert len((out / "points.csv").read_text().splitlines()) == 1 + 2 * 4
    # the library call dedupes too
    assert runner.evaluate(find_images(str(images))[0], ["jpeg", "jpeg"], ["none", "none"],
                           out, qualities={"jpeg": [20, 40, 60, 80]}, metrics=["psnr-rgb"],
                           dataset="images", jobs=1, progress=False)["codecs"] == ["jpeg"]


def test_the_main_process_builds_each_codec_once(images, tmp_path, monkeypatch):
    """A model-backed codec (osdiff) hashes its model folder when built: ``gencodec
    eval`` built every codec twice in the main process (qualities, then the run)."""
    built = []
    real = runner.get_codec

    def counting(name, **options):
        built.append(name)
        return real(name, **options)

    monkeypatch.setattr(runner, "get_codec", counting)
    monkeypatch.setattr(runner, "_CODECS", {})  # the workers' cache, empty as in a new one
    assert main(["eval", "--images", str(images), "--out", str(tmp_path / "res"),
                 "--codecs", "jpeg,webp,jpeg", "--qualities", "20,40,60,80",
                 "--metrics", "psnr-rgb", "--jobs", "1"]) == 0
    # the workers (here the main process, --jobs 1) build their own copy once each
    assert sorted(built) == ["jpeg", "jpeg", "webp", "webp"]


def test_crop_larger_than_an_image_is_refused(images, tmp_path, capsys):
    """``--crop`` was silently cut down to the image (b.png is 47x33)."""
    out = tmp_path / "res"
    assert _run(images, out, "--crop", "40") == 2
    assert "--crop 40: image b is 47x33; use at most --crop 33" in capsys.readouterr().err
    assert not out.exists()
    sources, _ = find_images("skimage:coffee", crop=64)
    assert sources[0].load().shape == (64, 64, 3)
    with pytest.raises(InputError, match="image coffee is 600x400; use at most --crop 400"):
        find_images("skimage:coffee", crop=401)


def test_diffc_has_default_qualities():
    """``eval --codecs diffc`` said "no default qualities" although diffc is listed."""
    from gencodec.codecs_ext import get_codec

    steps = runner.parse_qualities(None, ["diffc", "jpeg"])["diffc"]
    ts = get_codec("diffc").profile.timesteps
    assert len(steps) >= 4 and steps == sorted(steps)
    for k, t in zip(steps, (500, 200, 100, 50, 20)):  # the first step reaching each t
        assert ts[k - 1] <= t < ts[k - 2]


def test_progress_bar_only_on_a_terminal_and_full_disk_names_the_file(images, tmp_path,
                                                                      capsys, monkeypatch):
    """The bar went into redirected stderr logs; a full disk gave "[Errno 28] No space
    left on device" naming no file."""
    out = tmp_path / "res"
    assert _run(images, out) == 0
    assert capsys.readouterr().err == ""  # capsys's stderr is not a terminal
    from pathlib import Path

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert _run(images, tmp_path / "res2") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gencodec: error: {tmp_path / 'res2' / 'run.json'}: cannot write: " \
                  "No space left on device", err


def test_read_only_results_folder_is_one_plain_line(images, tmp_path, capsys, monkeypatch):
    """A read-only --out gave Python's "[Errno 30] Read-only file system: '...lock'"."""
    import errno
    import os

    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".gencodec-eval.lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(runner.os, "open", read_only)
    out = tmp_path / "res"
    assert _run(images, out) == 2
    assert capsys.readouterr().err.strip() == (
        f"gencodec: error: {out}: cannot write in the results folder: Read-only file system")
