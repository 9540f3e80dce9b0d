"""benchmarks/transcode.py's measuring functions on tiny synthetic clips (no download):
the clip preparation, the frames / timing / audio checks (which must also catch a
file that lost something), the bitrate, the metric plumbing and the BD-rate table,
and the refusals before any work."""

from __future__ import annotations

import fractions
import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from gencodec.cli.main import main as gencodec_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_transcode",
                                                  ROOT / "benchmarks" / "transcode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    """A compact model whose output layer is zero: an exact identity."""
    from gencodec.filters.compact import CompactFilterNet

    torch.manual_seed(0)
    model = CompactFilterNet(8, 1, 2)
    with torch.no_grad():
        model.conv_out.weight.zero_()
        model.conv_out.bias.zero_()
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model(x), x)
    d = tmp_path_factory.mktemp("identity")
    model.save_pretrained(d)
    return d


def _write_gop_clip(path: Path, frames, gop: int, rate: int = 25) -> None:
    """Video only, H.264 with a keyframe every ``gop`` frames."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "18", "g": str(gop), "keyint_min": str(gop),
                     "sc_threshold": "0"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, rate)
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def _keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [i for i, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]


def test_prepare_clip_cuts_at_a_keyframe_and_adds_audio(bench, tmp_path, testsrc):
    src = tmp_path / "gop.mp4"
    _write_gop_clip(src, testsrc(12, 64, 96), gop=4)
    assert _keyframes(src) == [0, 4, 8]
    made = bench.prepare_clip(src, tmp_path / "cut.mp4", seconds=0.2)  # 5 frames -> frame 8
    assert made["frames"] == 8 and made["seconds"] == pytest.approx(8 / 25)
    full, cut = bench.probe(src), bench.probe(tmp_path / "cut.mp4")
    assert cut["times"] == full["times"][:8]  # stream-copied: the same frames, same times
    assert cut["durations"] == [fractions.Fraction(1, 25)] * 8
    with av.open(str(src)) as a, av.open(str(tmp_path / "cut.mp4")) as b:
        original = [bytes(p) for p in a.demux(video=0) if p.size][:8]
        copied = [bytes(p) for p in b.demux(video=0) if p.size]
        assert copied == original
        assert not a.streams.audio and b.streams.audio[0].codec_context.name == "aac"
    # the added sine covers the video: packet ends reach the last frame's end, no further
    audio = cut["audio"]
    assert len(audio) >= 8 and len({h for _, _, _, h in audio}) > 2
    end = max(pts + dur for _, pts, dur, _ in audio)
    assert bench.span_seconds(cut) - 0.03 < end <= bench.span_seconds(cut) + 0.03
    # a clip with audio keeps its own packets over the span (no sine added)
    with_audio = bench.prepare_clip(tmp_path / "cut.mp4", tmp_path / "again.mp4", seconds=None)
    assert with_audio["audio"] == "copied"
    assert bench.probe(tmp_path / "again.mp4")["audio"] == audio


def test_transcode_outputs_are_checked_and_measured(bench, tmp_path, testsrc, write_clip,
                                                    identity_dir):
    """The CLI as the benchmark calls it, plain and with an identity model: frames,
    timing and audio kept; bitrate from the packets; metrics against the original."""
    src = tmp_path / "in.mp4"
    write_clip(src, testsrc(6, 176, 176))  # H.264 + AAC, MS-SSIM's 161-pixel minimum met
    ref = bench.probe(src, frames=True)
    assert len(ref["rgb"]) == 6 and len(ref["audio"]) > 5
    outs = {}
    for variant, model in (("plain", "none"), ("identity", str(identity_dir))):
        dst = tmp_path / f"{variant}.mp4"
        argv = bench.transcode_argv(src, dst, 30, model, preset="ultrafast")
        assert argv[:3] == ["transcode", str(src), str(dst)] and "--no-progress" in argv
        assert argv[argv.index("--model") + 1] == model and "--force" not in argv
        assert gencodec_main(argv) == 0
        outs[variant] = out = bench.probe(dst, frames=True)
        assert out["codec"] == "hevc"
        checks = bench.check_preserved(ref, out)
        assert {k: c["ok"] for k, c in checks.items()} == {
            "frames": True, "timestamps": True, "durations": True, "audio": True}, checks
        with av.open(str(dst)) as c:
            payload = sum(p.size for p in c.demux(video=0))
        assert out["video_bytes"] == payload
        assert bench.video_kbps(out) == pytest.approx(payload * 8 / (6 / 25) / 1000)
    assert bench.transcode_argv(src, tmp_path / "d.mp4", 28, None)[-2:] == ["--device", "cpu"]

    assert bench.metric_frame_indices(6, 2) == [0, 5]
    assert bench.metric_frame_indices(76, 6) == [0, 15, 30, 45, 60, 75]
    assert bench.metric_frame_indices(3, 6) == [0, 1, 2]
    m = {v: bench.frame_metrics(ref["rgb"], o["rgb"], subset=[5]) for v, o in outs.items()}
    for values in m.values():
        assert values["frames_psnr-y"] == 6 and values["frames_fsim"] == 1
        assert 25 < values["psnr-y"] < 70
        assert 0.8 < values["ms-ssim"] < 1 and 0 <= values["gmsd"] < 0.1
        assert all(np.isfinite(values[n]) for n in bench.METRIC_NAMES)
    assert len(outs["plain"]["frame_types"]) == 6 and outs["plain"]["frame_types"][0] == "I"
    # against itself: the metrics' ideal values
    same = bench.frame_metrics(ref["rgb"][:1], ref["rgb"][:1])
    assert same["psnr-y"] == float("inf") and same["ms-ssim"] == pytest.approx(1, abs=1e-5)
    assert same["gmsd"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="5 frames to compare with 6"):
        bench.frame_metrics(ref["rgb"], ref["rgb"][:5])


def test_checks_catch_lost_frames_timing_and_audio(bench, tmp_path, testsrc, write_clip):
    frames = testsrc(6, 64, 96)
    write_clip(tmp_path / "ref.mp4", frames)
    ref = bench.probe(tmp_path / "ref.mp4")
    assert all(c["ok"] for c in bench.check_preserved(ref, ref).values())

    write_clip(tmp_path / "short.mp4", frames[:5])
    short = bench.check_preserved(ref, bench.probe(tmp_path / "short.mp4"))
    assert not short["frames"]["ok"] and short["frames"]["detail"] == "5 of 6"
    assert not short["timestamps"]["ok"] and not short["audio"]["ok"]

    write_clip(tmp_path / "30fps.mp4", frames, rate=30)
    fast = bench.check_preserved(ref, bench.probe(tmp_path / "30fps.mp4"))
    assert fast["frames"]["ok"] and not fast["timestamps"]["ok"]
    assert "frame 1: 0.033333 s, input 0.040000 s" in fast["timestamps"]["detail"]
    assert not fast["durations"]["ok"]

    write_clip(tmp_path / "silent.mp4", frames, audio=False)
    silent = bench.check_preserved(ref, bench.probe(tmp_path / "silent.mp4"))
    assert silent["timestamps"]["ok"] and not silent["audio"]["ok"]
    assert silent["audio"]["detail"].startswith("0 of ")

    damaged = dict(ref, audio=list(ref["audio"]))
    s, pts, dur, _ = damaged["audio"][3]
    damaged["audio"][3] = (s, pts, dur, "0" * 64)  # same timing, other payload
    bad = bench.check_preserved(ref, damaged)["audio"]
    assert not bad["ok"] and "packet 3 differs" in bad["detail"]
    shifted = dict(ref, times=list(ref["times"]))
    shifted["times"][2] += ref["video_time_base"]  # one tick: more than half a tick off
    assert not bench.check_preserved(ref, shifted)["timestamps"]["ok"]


def _points(rate_factor: float):
    points = []
    for crf, kbps in zip((24, 28, 32, 36), (800.0, 500.0, 320.0, 200.0)):
        q = np.log(kbps)
        metrics = {"psnr-y": 20 + 3 * q, "ms-ssim": 0.5 + q / 20, "haarpsi": q / 10,
                   "gmsd": 0.2 - q / 50, "vsi": 0.9 + q / 100, "fsim": 0.6 + q / 30}
        points.append({"crf": crf, "variant": "plain", "kbps": kbps, "metrics": metrics})
        points.append({"crf": crf, "variant": "preprocessed", "kbps": kbps * rate_factor,
                       "metrics": dict(metrics)})
    return points


def test_bd_rates_and_plot(bench, tmp_path):
    """The same qualities at 90 % of the rate: BD-rate -10 % for every metric, GMSD
    (lower is better) included; the plot is a real PNG."""
    points = _points(0.9)
    bd = bench.bd_rates(points)
    assert set(bd) == set(bench.METRIC_NAMES)
    for name, value in bd.items():
        assert value["bd_rate"] == pytest.approx(-10.0, abs=1e-6), name
    assert bench.bd_rates(_points(1.0))["gmsd"]["bd_rate"] == pytest.approx(0, abs=1e-9)
    too_few = [p for p in points if p["crf"] != 36]
    assert bench.bd_rates(too_few)["psnr-y"]["bd_rate"] is None
    bench.plot_rd(points, bd, tmp_path / "rd.png", "test")
    with Image.open(tmp_path / "rd.png") as im:
        assert im.format == "PNG" and im.width > 500
    text = json.dumps(bench._jsonable({"a": fractions.Fraction(1, 4), "b": float("nan"),
                                       "c": [float("inf")]}))
    assert json.loads(text) == {"a": 0.25, "b": None, "c": ["inf"]}


def test_refusals_before_any_work(bench, tmp_path, monkeypatch, capsys):
    from gencodec import models

    monkeypatch.delitem(models.MODELS, models.DEFAULT_PREPROCESSOR, raising=False)
    out = tmp_path / "out"
    assert bench.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no default preprocessing model is installed" in err[0]
    assert err[0].endswith("pass --model with a model directory or hub id")
    assert bench.main(["--model", "none", "--out", str(out)]) == 2
    assert "--model none: this command needs a preprocessing model" in capsys.readouterr().err
    assert bench.main(["--model", str(tmp_path), "--crf", "24", "28", "32",
                       "--out", str(out)]) == 2
    assert "a BD-rate needs at least 4" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "transcode.json").write_text("{}")
    assert bench.main(["--model", str(tmp_path), "--out", str(out)]) == 2
    assert "exists (--force replaces" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["transcode.json"]


def test_plain_x265_chooses_its_own_frame_types(bench, tmp_path, identity_dir):
    """Plain x265 (the baseline) and x265 after an identity model see the same pixels
    and should code about the same: on an all-intra input neither may be all-intra."""
    skimage = pytest.importorskip("skimage")
    img = skimage.data.astronaut()
    src = tmp_path / "intra.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width = v.height = 128
        v.pix_fmt = "yuv420p"
        v.options = {"crf": "12", "g": "1", "preset": "ultrafast"}
        for i in range(8):
            f = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(img[100 + 2 * i:228 + 2 * i, 150:278]), format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    assert bench.probe(src)["frame_types"] == "I" * 8
    sizes = {}
    for variant, model in (("plain", "none"), ("identity", str(identity_dir))):
        dst = tmp_path / f"{variant}.mp4"
        assert gencodec_main(bench.transcode_argv(src, dst, 28, model, preset="ultrafast")) == 0
        sizes[variant] = bench.probe(dst)["video_bytes"]
        assert bench.probe(dst)["frame_types"] != "I" * 8, variant
    assert sizes["plain"] == pytest.approx(sizes["identity"], rel=0.25)
