"""Rate-perception fine-tuning: what trains, loss, resume, LoRA, DDP, real surrogates."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gencodec.errors import InputError
from gencodec.filters.model import load_frame_model
from gencodec.train import rp
from gencodec.train.data import PatchSampler

HERE = Path(__file__).parent


def make_config(photo_dirs, out, **kw) -> rp.RPConfig:
    train, _ = photo_dirs
    base = dict(train=str(train), out=str(out), codec="jpeg", steps=6, batch=4, crop=32,
                patch=64, candidates_per_image=8, jnd_threshold=0.5, log_every=1,
                ckpt_every=3, val_every=1000, seed=3, perceptual="dss")
    base.update(kw)
    return rp.RPConfig(**base)


def fixed_loss(model, cfg: rp.RPConfig, surrogate, quality: float = 50.0) -> float:
    """Eq. 6 on a fixed batch (step 0's) at a fixed quality."""
    sampler = PatchSampler.from_folder(cfg.train, patch=cfg.patch, crop=cfg.crop,
                                       jnd_threshold=cfg.jnd_threshold,
                                       candidates_per_image=cfg.candidates_per_image,
                                       seed=cfg.seed)
    x = sampler.batch(sampler.rng(10 ** 6), 8)  # a step the runs never reach
    lam = rp.rate_lambda(rp.QualitySchedule.for_codec(cfg.codec).qp(quality))
    with torch.no_grad():
        x_hat, bits = surrogate(model(x), quality)
        return float(rp.rp_loss(x, x_hat, bits, lam, rp.Perceptual("dss"), cfg.w_p)["loss"])


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_lambda_schedule_is_eq7():
    assert rp.rate_lambda(10) == pytest.approx(math.exp(-1.15 + 1.145))
    assert rp.rate_lambda(50) == pytest.approx(math.exp(-5.75 + 1.145))
    jpeg = rp.QualitySchedule.for_codec("jpeg")
    assert (jpeg.qp(90.0), jpeg.qp(10.0), jpeg.qp(50.0)) == (10.0, 50.0, 30.0)
    bpg = rp.QualitySchedule.for_codec("bpg")
    import numpy as np

    draws = [bpg.draw(np.random.default_rng(i)) for i in range(200)]
    assert 10.0 <= min(draws) < 12.0 and 48.0 < max(draws) <= 50.0
    with pytest.raises(InputError):
        rp.QualitySchedule.for_codec("bpg", 30, 20)


@pytest.mark.slow
def test_compact_trains_all_weights_and_loss_decreases(photo_dirs, one_photo_dir, tmp_path,
                                                      standin):
    # one 64x64 training crop, a constant lr 1e-4 and high qualities (lambda near 1,
    # where the rate term dominates and smoothing pays): a clean descent
    cfg = make_config((one_photo_dir, None), tmp_path / "run", steps=20, ckpt_every=10,
                      patch=64, crop=64, jnd_threshold=0.0, candidates_per_image=2, lr=1e-4,
                      lr_min=1e-4, quality_lo=88, quality_hi=88.5, val=str(photo_dirs[1]),
                      val_every=10, val_side=64, val_metrics=("psnr-y", "gmsd"))
    start = rp.build_model(cfg)
    model_dir = rp.train(cfg, surrogate=standin)
    trained = load_frame_model(model_dir)
    before, after = fixed_loss(start, cfg, standin, 88.0), fixed_loss(trained, cfg, standin, 88.0)
    assert after < before - 1e-3
    assert changed(weights(start), weights(trained)) == set(weights(start))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows if r["loss"]] == list(range(1, 21))
    val_rows = [r for r in rows if r["val_bpp_plain"]]
    assert [int(r["step"]) for r in val_rows] == [10, 20]
    assert all(float(r["val_bpp_plain"]) > 0 for r in val_rows)
    assert all(float(r["lr"]) == pytest.approx(1e-4) for r in rows if r["lr"])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "config.json").read_text())["perceptual_loss"] == "dss"


@pytest.mark.slow
@pytest.mark.parametrize("lora", [0, 2])
def test_onestep_trains_only_attention_qkv_and_resumes(photo_dirs, tmp_path, standin,
                                                       onestep_dir, lora):
    pytest.importorskip("diffusers")
    if lora:
        pytest.importorskip("peft", reason="LoRA needs gencodec[train]")
    cfg = make_config(photo_dirs, tmp_path / "a", model=str(onestep_dir), lora_rank=lora,
                      lr=1e-2)
    start = load_frame_model(onestep_dir)
    model = load_frame_model(onestep_dir)
    rp.prepare_trainable(model, lora)
    n_train, n_total = rp.trainable_fraction(model)
    assert 0 < n_train < 0.2 * n_total
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    if lora:
        assert trainable and all("lora_" in k for k in trainable)
    else:
        assert trainable and all(rp.ATTENTION_QKV.search(k) for k in trainable)

    trained = load_frame_model(rp.train(cfg, surrogate=standin))
    moved = changed(weights(start), weights(trained))
    qkv = {k for k in weights(start) if rp.ATTENTION_QKV.search(k) and k.startswith("unet.")}
    assert moved == qkv  # every Q/K/V projection moved, nothing else (VAE, embedding...)
    assert not any(k.startswith("vae.") for k in moved)
    assert fixed_loss(trained, cfg, standin) < fixed_loss(start, cfg, standin)
    ck = torch.load(tmp_path / "a" / "checkpoints" / "step-6.pt", weights_only=True)
    assert set(ck["model"]) == {k for k in trainable}  # only what trains is stored

    # Resume: a run stopped after its step-3 checkpoint continues the same curve.
    cfg_b = dataclasses.replace(cfg, out=str(tmp_path / "b"))
    rp.train(cfg_b, surrogate=standin)
    (tmp_path / "b" / "checkpoints" / "step-6.pt").unlink()
    with pytest.raises(InputError, match="--resume"):
        rp.train(cfg_b, surrogate=standin)
    resumed = load_frame_model(rp.train(dataclasses.replace(cfg_b, resume=True),
                                        surrogate=standin))
    assert changed(weights(trained), weights(resumed)) == set()
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()
    with pytest.raises(InputError, match="other settings"):
        rp.train(dataclasses.replace(cfg_b, resume=True, lr=5e-3), surrogate=standin)


@pytest.mark.slow
def test_compact_resume_matches_uninterrupted(photo_dirs, tmp_path, standin):
    cfg = make_config(photo_dirs, tmp_path / "a", steps=8, ckpt_every=4)
    a = load_frame_model(rp.train(cfg, surrogate=standin))
    cfg_b = dataclasses.replace(cfg, out=str(tmp_path / "b"))
    rp.train(cfg_b, surrogate=standin)
    (tmp_path / "b" / "checkpoints" / "step-8.pt").unlink()
    b = load_frame_model(rp.train(dataclasses.replace(cfg_b, resume=True), surrogate=standin))
    assert changed(weights(a), weights(b)) == set()
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()


def test_lora_refused_for_compact(photo_dirs, tmp_path, standin):
    with pytest.raises(InputError, match="LoRA"):
        rp.train(make_config(photo_dirs, tmp_path, lora_rank=2), surrogate=standin)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one(photo_dirs, tmp_path, standin):
    single = make_config(photo_dirs, tmp_path / "single", steps=4, ckpt_every=4)
    one = load_frame_model(rp.train(single, surrogate=standin))
    ddp = dataclasses.replace(single, out=str(tmp_path / "ddp"))
    cfg_file = tmp_path / "ddp.json"
    cfg_file.write_text(json.dumps(dataclasses.asdict(ddp)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                          "2", "--master-port", str(_free_port()),
                          str(HERE / "ddp_worker.py"), str(cfg_file)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    two = load_frame_model(tmp_path / "ddp" / "model")
    for k, v in weights(one).items():
        torch.testing.assert_close(weights(two)[k], v, rtol=1e-4, atol=1e-6)
    rows1 = list(csv.DictReader(open(tmp_path / "single" / "log.csv")))
    rows2 = list(csv.DictReader(open(tmp_path / "ddp" / "log.csv")))
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2]
    for r1, r2 in zip(rows1, rows2):
        assert float(r2["loss"]) == pytest.approx(float(r1["loss"]), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["jpeg", "bpg"])
def test_compact_through_real_surrogate(photo_dirs, tmp_path, codec):
    from gencodec.codecs_ext.surrogates import SURROGATES, get_surrogate

    if codec not in SURROGATES:
        pytest.skip(f"the {codec} surrogate is not registered yet")
    cfg = make_config(photo_dirs, tmp_path, codec=codec, steps=4, lr=1e-2, ckpt_every=4)
    surrogate = get_surrogate(codec)
    start = rp.build_model(cfg)
    trained = load_frame_model(rp.train(cfg, surrogate=surrogate))
    assert changed(weights(start), weights(trained)) == set(weights(start))
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 4 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(float(r["bpp"]) > 0 for r in rows)


def test_cli_help_and_one_line_errors(photo_dirs, tmp_path, standin, capsys):
    from gencodec.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "rp", "--help"])
    assert exc.value.code == 0
    assert "example: gencodec train rp" in capsys.readouterr().out.replace("\n", " ")
    train, val = photo_dirs
    out = tmp_path / "run"
    rp.train(make_config(photo_dirs, out, steps=2, ckpt_every=2), surrogate=standin)
    capsys.readouterr()
    args = ["train", "rp", "--train", str(train), "--out", str(out), "--codec", "jpeg"]
    assert main(args) == 2  # checkpoints there: --resume or --force
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and len(err.splitlines()) == 1
    assert main(["train", "rp", "--train", str(tmp_path / "none"), "--out",
                 str(tmp_path / "other"), "--crop", "16"]) == 2
    assert "crop must be" in capsys.readouterr().err


def test_dss_loss_gradient_is_finite_on_flat_blocks():
    from gencodec.eval.metrics import _piq

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    flat = torch.full_like(x, 0.5)
    flat[:, :, :32] = x[:, :, :32]  # half textured, half flat (as coded images are)
    raw = flat.clone().requires_grad_()
    (1 - _piq("dss").dss(raw, x, data_range=1.0)).backward()
    assert not torch.isfinite(raw.grad).all()  # piq alone: NaN from sqrt(0 * 0)
    guarded = flat.clone().requires_grad_()
    loss = rp.Perceptual("dss")(guarded, x)
    loss.backward()
    assert 0 < loss.item() < 1 and torch.isfinite(guarded.grad).all()
    assert guarded.grad[:, :, :32].abs().sum() > 0  # the textured half still gets gradient


def test_distortion_pool_compares_what_a_farther_viewer_sees():
    """pool = 2: a change that keeps every 2x2 block mean costs no distortion (only its
    rate counts), a change of the block means does; pool = 1 sees both."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    inner = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(32, 32) * 0.05  # zero 2x2 means
    bits = torch.full((2,), 1000.0)
    dss = rp.Perceptual("dss")
    near = rp.rp_loss(x, x + inner, bits, 0.5, dss, 1.0, pool=1)
    far = rp.rp_loss(x, x + inner, bits, 0.5, dss, 1.0, pool=2)
    assert float(near["l1"]) == pytest.approx(0.05, rel=1e-5) and float(near["perceptual"]) > 0
    assert float(far["l1"]) < 1e-7  # float32 rounding
    assert float(far["perceptual"]) < float(near["perceptual"]) / 50
    assert float(far["bpp"]) == float(near["bpp"]) == pytest.approx(1000.0 / 64 ** 2)
    shifted = rp.rp_loss(x, x + 0.05, bits, 0.5, dss, 1.0, pool=2)
    assert float(shifted["l1"]) == pytest.approx(0.05, rel=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("keep_means", 0, "keep_means must be at least 1"),
    ("distortion_pool", 0, "distortion_pool must be at least 1"),
    ("distortion_pool", 4, "crop / distortion pool must be at least 32"),
    ("chroma_sigma", -0.5, "chroma sigma must be in 0..16"),
])
def test_bad_viewing_distance_settings_are_refused(photo_dirs, tmp_path, field, value,
                                                   message):
    with pytest.raises(InputError, match=message):
        rp.train(make_config(photo_dirs, tmp_path, **{field: value}))


def test_new_compact_model_carries_the_chroma_low_pass(photo_dirs, tmp_path):
    """--chroma-sigma reaches the new compact model, which starts as the identity on
    luma (its correction is zero; the low-pass touches chroma only)."""
    cfg = make_config(photo_dirs, tmp_path, keep_means=2, chroma_sigma=1.0)
    model = rp.build_model(cfg)
    assert model.config.chroma_sigma == 1.0 and model.chroma.radius == 3
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        y = model(x)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((y * luma).sum(1), (x * luma).sum(1), rtol=0, atol=1e-6)
    assert (y - x).abs().max() > 1e-2
