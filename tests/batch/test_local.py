"""The local executor and the item function: failures stay with their item, outputs
equal the item run alone, reruns skip what is up to date, the CLI's exit codes."""

from __future__ import annotations

import json

import pytest

from gencodec.batch import LocalExecutor, run_batch, run_item
from gencodec.batch.item import sidecar_path, up_to_date

CORRUPT = (4, 11, 17)


@pytest.fixture(scope="module")
def job(tmp_path_factory, compact_model, batch_helpers):
    """20 small items with varied settings, 3 of them corrupt, run once on 2 workers."""
    root = tmp_path_factory.mktemp("job")
    inputs = batch_helpers.write_photos(root / "in", 20, corrupt=CORRUPT)
    items = batch_helpers.varied_items(inputs, root / "out", compact_model)
    summary = run_batch(items, LocalExecutor(jobs=2, retries=1), root / "summary.json",
                        progress=False)
    return root, items, summary


def test_exactly_the_corrupt_inputs_fail(job):
    root, items, summary = job
    assert (summary["done"], summary["skipped"], summary["failed"]) == (17, 0, 3)
    failed = sorted(f["input"] for f in summary["failures"])
    assert failed == sorted(items[i].input for i in CORRUPT)
    for f in summary["failures"]:  # bad input: one clear message, no retry
        assert f["input"] in f["error"] and f["attempts"] == 1
        assert "Traceback" not in f["error"]
    for i in CORRUPT:
        assert not sidecar_path(items[i].output).exists()
    assert json.loads((root / "summary.json").read_text())["failed"] == 3


def test_outputs_equal_each_item_run_alone(job, tmp_path, batch_helpers):
    import dataclasses

    root, items, summary = job
    for item in items:
        if item.index in CORRUPT:
            continue
        alone = dataclasses.replace(item, output=str(tmp_path / ("alone-" +
                                                                  item.output.rsplit("/", 1)[1])))
        result = run_item(alone)
        assert result.status == "done", result.error
        with open(item.output, "rb") as a, open(alone.output, "rb") as b:
            assert a.read() == b.read(), item.output
    assert batch_helpers.temporaries(root) == []


def test_sidecars_record_the_item(job):
    from gencodec import __version__

    root, items, summary = job
    preprocessed = next(i for i in items if i.settings.preprocess != "none"
                        and i.index not in CORRUPT)
    doc = json.loads(sidecar_path(preprocessed.output).read_text())
    assert doc["gencodec_version"] == __version__
    assert doc["model_fingerprint"]["preprocess"].startswith(str(preprocessed.settings.preprocess))
    assert "@sha256:" in doc["model_fingerprint"]["preprocess"]
    data = open(preprocessed.output, "rb").read()
    assert doc["bytes_out"] == len(data)
    assert doc["bpp"] == pytest.approx(len(data) * 8 / (doc["width"] * doc["height"]))
    assert set(doc["timings"]) >= {"load", "preprocess", "encode"}
    bpp_item = next(i for i in items if i.settings.bpp is not None and i.index not in CORRUPT)
    doc = json.loads(sidecar_path(bpp_item.output).read_text())
    assert doc["settings"]["bpp"] == 1.0 and doc["settings"]["quality"] is None
    assert 1 <= doc["quality"] <= 100


def test_rerun_skips_what_is_up_to_date(job, tmp_path):
    root, items, summary = job
    before = {i.output: open(i.output, "rb").read() for i in items if i.index not in CORRUPT}
    again = run_batch(items, LocalExecutor(jobs=2, retries=0), tmp_path / "s.json",
                      progress=False)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 17, 3)
    assert again["bytes_out"] == summary["bytes_out"]
    assert again["mean_bpp"] == pytest.approx(summary["mean_bpp"])
    assert {o: open(o, "rb").read() for o in before} == before


def test_changed_settings_or_input_need_force(tmp_path, batch_helpers):
    import dataclasses

    from gencodec.batch.manifest import Item, Settings, check_items

    src = batch_helpers.write_photos(tmp_path / "in", 1)[0]
    item = check_items([("x", Item(0, str(src), str(tmp_path / "a.webp"),
                                   Settings(codec="webp", quality=60)))])[0]
    assert run_item(item).status == "done"
    assert up_to_date(item) is not None
    other = dataclasses.replace(item, settings=Settings(codec="webp", quality=61))
    assert up_to_date(other) is None
    refused = run_item(other)
    assert refused.status == "failed"
    assert "exists and was made with other settings (use --force" in refused.error
    assert run_item(dataclasses.replace(other, force=True)).status == "done"
    assert run_item(other).status == "skipped"
    # an output damaged by hand is not taken for done
    with open(item.output, "ab") as f:
        f.write(b"x")
    assert up_to_date(other) is None


def _batch(*args: str) -> int:
    from gencodec.cli.main import main

    return main(["batch", *args])


@pytest.mark.slow
def test_cli_directory_job_and_exit_codes(tmp_path, batch_helpers, capsys):
    batch_helpers.write_photos(tmp_path / "in" / "sub", 3)
    batch_helpers.write_photos(tmp_path / "in", 2)
    args = (str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--codec", "jpeg",
            "-q", "75", "--metrics", "psnr-rgb", "-j", "2")
    assert _batch(*args) == 0
    assert "5 done, 0 skipped, 0 failed of 5 items" in capsys.readouterr().out
    assert (tmp_path / "out" / "sub" / "img02.jpg").is_file()
    doc = json.loads((tmp_path / "out" / "sub" / "img02.jpg.gencodec.json").read_text())
    assert 20 < doc["metrics"]["psnr-rgb"] < 60
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["done"] == 5 and summary["mean_bpp"] > 0
    (tmp_path / "in" / "new.png").write_bytes(b"not an image")
    (tmp_path / "in" / "img01.png").write_bytes((tmp_path / "in" / "img00.png").read_bytes())
    assert _batch(*args) == 1
    out = capsys.readouterr().out
    assert "0 done, 4 skipped, 2 failed of 6 items" in out
    assert "new.png: not a recognised image file" in out
    assert "img01.jpg: exists and was made from another version of" in out
    assert _batch(*args, "--force") == 1
    assert "1 done, 4 skipped, 1 failed" in capsys.readouterr().out


def test_cli_manifest_overrides(tmp_path, batch_helpers):
    batch_helpers.write_photos(tmp_path, 3)
    (tmp_path / "job.csv").write_text(
        "input,output,codec,quality,bpp,options\n"
        "img00.png,out/a.webp,,,,\n"
        "img01.png,out/b.jpg,jpeg,85,,subsampling=444\n"
        "img02.png,out/c.webp,,,0.8,\n")
    assert _batch(str(tmp_path / "job.csv"), "--codec", "webp", "-q", "40", "-j", "1") == 0
    docs = {n: json.loads((tmp_path / "out" / f"{n}.gencodec.json").read_text())
            for n in ("a.webp", "b.jpg", "c.webp")}
    assert docs["a.webp"]["quality"] == 40
    assert docs["b.jpg"]["quality"] == 85
    assert docs["b.jpg"]["settings"]["options"] == {"subsampling": 444}
    assert docs["c.webp"]["settings"]["bpp"] == 0.8
    assert (tmp_path / "job.summary.json").is_file()


@pytest.mark.parametrize("text, message", [
    ("input,output,colour\na.png,a.webp,red\n", "unknown column(s) colour"),
    ("input,output\na.png,x.webp\nb.png,x.webp\n", "is also the output of"),
    ("input,output\na.png,b.png\nb.png,c.webp\n", "is the input of"),
    ("input,output,quality\na.png,a.webp,101\n", "outside 0..100"),
    ("input,output,quality,bpp\na.png,a.webp,50,0.5\n", "not both"),
    ("input,output,codec\na.png,a.mp4,x265\n", "video codec"),
    ("input,output,preprocess\na.png,a.webp,./no-such-model\n", "no such directory"),
])
def test_bad_manifests_refused_before_any_work(tmp_path, capsys, text, message):
    (tmp_path / "job.csv").write_text(text)
    assert _batch(str(tmp_path / "job.csv"), "--codec", "webp") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "job.summary.json").exists()


def test_temporaries_of_a_killed_run_are_removed(tmp_path, batch_helpers):
    """What a driver killed with SIGKILL leaves (temporary names made by the same
    atomic_output the items write through) is removed by the next run."""
    from gencodec.batch.item import sidecar_path
    from gencodec.batch.manifest import Item, Settings, check_items
    from gencodec.imageio import atomic_output

    src = batch_helpers.write_photos(tmp_path / "in", 1)[0]
    out = tmp_path / "out" / "a-rather-long-output-name-beyond-forty-characters.webp"
    out.parent.mkdir()
    (out.parent / "unrelated.part.webp").write_bytes(b"not ours")
    writing = [atomic_output(path) for path in (out, sidecar_path(out))]
    left = [w.__enter__() for w in writing]  # never finished: as in a killed process
    for p in left:
        p.write_bytes(b"half")
    assert all(p.exists() for p in left)
    item = check_items([("x", Item(0, str(src), str(out), Settings(codec="webp")))])[0]
    summary = run_batch([item], LocalExecutor(jobs=1), tmp_path / "s.json", progress=False)
    assert summary["done"] == 1
    assert not any(p.exists() for p in left)
    assert (out.parent / "unrelated.part.webp").exists()


def test_jsonl_manifest(tmp_path, batch_helpers):
    from gencodec.batch.manifest import Settings, read_manifest

    (tmp_path / "job.jsonl").write_text(
        '{"input": "a.png", "output": "o/a.jpg", "codec": "jpeg", "bpp": 0.5}\n\n'
        '{"input": "b.png", "output": "o/b.webp", "options": {"method": 6}}\n')
    (where_a, a), (where_b, b) = read_manifest(tmp_path / "job.jsonl",
                                               Settings(codec="webp", quality=70))
    assert where_a.endswith("job.jsonl:1") and where_b.endswith("job.jsonl:3")
    assert (a.settings.codec, a.settings.bpp, a.settings.quality) == ("jpeg", 0.5, None)
    assert a.input == str(tmp_path / "a.png")
    assert (b.settings.codec, b.settings.quality, b.settings.options) == \
        ("webp", 70, (("method", 6),))
