"""OSDiff training: Eqs. 9-14, the GAN term's gradient, alternation, frozen backbone,
resume, DDP, CLI."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gencodec.errors import InputError
from gencodec.osdiff.discriminator import (FeatureDiscriminator, discriminator_loss,
                                           generator_loss, renoise)
from gencodec.train import common, osdiff
from gencodec.train.data import PhotoCrops
from gencodec.train.osdiff_config import OSDiffTrainConfig

TINY_PATH = Path(__file__).parents[1] / "osdiff" / "tiny.py"


def test_discriminator_losses_are_eq12_and_eq14():
    g = torch.Generator().manual_seed(0)
    real = [torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 2, 2, generator=g)]
    fake = [torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 2, 2, generator=g)]

    def log_d(l):  # log D = log sigmoid(logit)
        return torch.log(torch.sigmoid(l))

    eq12 = sum(-log_d(l).mean() for l in fake) / 2
    assert float(generator_loss(fake)) == pytest.approx(float(eq12), rel=1e-5)
    eq14 = sum(-torch.log(1 - torch.sigmoid(f)).mean() - log_d(r).mean()
               for r, f in zip(real, fake)) / 2
    parts = discriminator_loss(real, fake)
    assert float(parts["loss"]) == pytest.approx(float(eq14), rel=1e-5)
    assert float(parts["loss"]) == pytest.approx(float(parts["real"] + parts["fake"]))
    sure = discriminator_loss([torch.full((1, 1, 2, 2), 9.0)], [torch.full((1, 1, 2, 2), -9.0)])
    assert float(sure["accuracy"]) == 1.0 and float(sure["loss"]) < 1e-3
    # the generator's loss is non-saturating: large where D is sure the sample is fake
    assert float(generator_loss([torch.full((1, 1, 2, 2), -9.0)])) > 8.9


def test_renoise_is_the_forward_process():
    abar = torch.linspace(0.999, 0.01, 1000, dtype=torch.float64)
    y = torch.randn(3, 4, 5, 5)
    noise = torch.randn(3, 4, 5, 5)
    t = torch.tensor([0, 500, 999])
    y_t = renoise(y, t, noise, abar)
    for i in range(3):
        a = float(abar[t[i]])
        torch.testing.assert_close(y_t[i], math.sqrt(a) * y[i] + math.sqrt(1 - a) * noise[i])


def test_discriminator_heads_score_every_position():
    disc = FeatureDiscriminator([16, 32, 32], hidden=8)
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4), torch.randn(2, 32, 2, 2)]
    logits = disc(feats)
    assert [tuple(l.shape) for l in logits] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    with pytest.raises(ValueError, match="heads"):
        disc(feats[:2])


def test_generator_losses_are_eq13():
    g = torch.Generator().manual_seed(1)
    y0, y_c, y_r = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    out = types.SimpleNamespace(y0=y0, y_c=y_c, y_r=y_r, bpp=torch.tensor(0.25))
    cfg = OSDiffTrainConfig("", "", lambda_rate=2.0)
    gan = torch.tensor(0.7)
    parts = osdiff.generator_losses(out, gan, cfg)
    diff, feature = ((y0 - y_r) ** 2).mean(), ((y0 - y_c) ** 2).mean()
    assert float(parts["diff"]) == pytest.approx(float(diff))
    assert float(parts["feature"]) == pytest.approx(float(feature))
    # the paper's weights: lambda_1 = 1, lambda_3 = 2, lambda_4 = 0.01
    expect = 1.0 * diff + 2.0 * 0.25 + 2.0 * feature + 0.01 * 0.7
    assert float(parts["loss"]) == pytest.approx(float(expect), rel=1e-6)
    assert (cfg.lambda_diff, cfg.lambda_feature, cfg.lambda_gan) == (1.0, 2.0, 0.01)
    assert F.mse_loss(y_r, y0).item() == pytest.approx(float(parts["diff"]))


# -- with a tiny random backbone (tests/osdiff/tiny.py) ----------------------------------

def _tiny():
    pytest.importorskip("diffusers", reason="OSDiff needs gencodec[diffusion]")
    spec = importlib.util.spec_from_file_location("osdiff_tiny", TINY_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny random SD folder and the JSON of the tiny OSDiff configuration."""
    from gencodec.osdiff.model import OSDiffConfig

    root = tmp_path_factory.mktemp("osdiff_train")
    folder = _tiny().make_backbone(root / "sd", seed=5)
    config = root / "tiny.json"
    config.write_text(OSDiffConfig.tiny().to_json())
    return folder, config


def make_config(photo_dirs, backbone, out, **kw) -> OSDiffTrainConfig:
    base = dict(train=str(photo_dirs[0]), out=str(out), backbone=str(backbone[0]),
                codec_config=str(backbone[1]), steps=4, batch=2, crop=32, log_every=1,
                ckpt_every=2, disc_hidden=8, seed=3)
    base.update(kw)
    return OSDiffTrainConfig(**base)


def make_trainer(cfg: OSDiffTrainConfig, active_control: bool = True) -> osdiff.OSDiffTrainer:
    """A trainer on a fresh model; with ``active_control`` the zero convolutions get
    random weights (as after some training), so that y_r depends on the codec."""
    common.seed_everything(cfg.seed)
    model = osdiff.build_model(cfg)
    if active_control:
        _tiny().randomize(model, 7)
    return osdiff.OSDiffTrainer(model, cfg)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def names(module: torch.nn.Module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {k for k, p in module.named_parameters() if id(p) in ids}


def test_photo_crops_are_keyed_by_step(photo_dirs):
    crops = PhotoCrops(str(photo_dirs[0]), 32, seed=1)
    a, b = crops.batch(5, 3), crops.batch(5, 3)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, crops.batch(6, 3))
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    with pytest.raises(InputError, match="smaller than the crop"):
        PhotoCrops(str(photo_dirs[0]), 128)
    # decoding the photos when drawn (the distillation's sampler) draws the same crops
    lazy = PhotoCrops(str(photo_dirs[0]), 32, seed=1, preload=False)
    assert torch.equal(lazy.batch(5, 3), a) and lazy.fingerprint() == crops.fingerprint()
    with pytest.raises(InputError, match="smaller than the crop"):
        PhotoCrops(str(photo_dirs[0]), 128, preload=False).batch(0, 1)


def test_steps_are_finite_and_the_backbone_stays_frozen(photo_dirs, backbone, tmp_path):
    tr = make_trainer(make_config(photo_dirs, backbone, tmp_path))
    vae, unet = snapshot(tr.model.vae), snapshot(tr.model.unet)
    codec, control = snapshot(tr.model.latent_codec), snapshot(tr.model.control)
    crops = PhotoCrops(str(photo_dirs[0]), 32, seed=3)
    for step in range(2):
        logs = tr.train_step(crops.batch(step, 2))
        assert set(logs) == set(osdiff.LOG_COLUMNS)
        assert all(math.isfinite(v) for v in logs.values()), logs
        assert logs["rate"] > 0 and logs["grad_g"] > 0 and logs["grad_d"] > 0
    assert changed(vae, snapshot(tr.model.vae)) == set()
    assert changed(unet, snapshot(tr.model.unet)) == set()
    assert not any(p.requires_grad for p in tr.model.vae.parameters())
    assert not any(p.requires_grad for p in tr.model.unet.parameters())
    moved = changed(codec, snapshot(tr.model.latent_codec))
    assert {k.split(".")[0] for k in moved} >= {"g_a", "g_s", "h_a", "h_s"}
    assert changed(control, snapshot(tr.model.control))
    assert tr.step == 2


def test_gan_term_has_a_gradient_on_the_generator(photo_dirs, backbone, tmp_path):
    """The real generator update with the GAN term alone (Eq. 13 with lambda_4 = 1 and
    the other weights 0): its gradient reaches the codec and the control branch through
    y_r and the frozen UNet, and moves them (no weight decay, so only gradients move
    parameters). Logits computed under no_grad, as in the public code, fail this."""
    cfg = make_config(photo_dirs, backbone, tmp_path, lambda_diff=0.0, lambda_feature=0.0,
                      lambda_rate=0.0, lambda_gan=1.0, weight_decay=0.0)
    tr = make_trainer(cfg)
    x = PhotoCrops(str(photo_dirs[0]), 32, seed=3).batch(0, 2)
    before, disc = snapshot(tr.model), snapshot(tr.disc)
    logs, _, _ = tr.generator_step(x)
    assert logs["gan"] > 0 and logs["grad_g"] > 0
    assert logs["loss"] == pytest.approx(logs["gan"])
    with_grad = {k for k, p in tr.model.named_parameters()
                 if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert with_grad <= names(tr.model, tr.g_params)
    moved = changed(before, snapshot(tr.model))
    for part in ("latent_codec.g_a.", "latent_codec.g_s.", "control.conv_in.",
                 "control.enc_zero_convs."):
        assert any(k.startswith(part) for k in with_grad), part
        assert any(k.startswith(part) for k in moved), part
    assert not any(k.startswith(("vae.", "unet.")) for k in moved)
    assert all(p.grad is None for p in tr.disc.parameters())
    assert changed(disc, snapshot(tr.disc)) == set()
    assert all(p.grad is None for p in tr.model.vae.parameters())
    assert all(p.grad is None for p in tr.model.unet.parameters())


def test_optimisers_and_random_keys(photo_dirs, backbone, tmp_path):
    """The quantiles' optimiser has no weight decay (CompressAI's aux optimiser); the
    keys of the random draws never collide, for any phase and sample index."""
    tr = make_trainer(make_config(photo_dirs, backbone, tmp_path), active_control=False)
    assert [g["weight_decay"] for g in tr.opt_aux.param_groups] == [0.0]
    assert tr.opt_g.param_groups[0]["weight_decay"] == tr.cfg.weight_decay
    assert tr.scaler_g is None and tr.scaler_d is None  # CPU: fp32, no fp16 scaler
    keys = {tr._key(phase, sample) for phase in range(4) for sample in range(5000)}
    assert len(keys) == 4 * 5000 and all(0 <= k < 2 ** 63 for k in keys)
    tr.step += 1
    assert not keys & {tr._key(phase, sample) for phase in range(4) for sample in range(50)}


def test_scaled_updates_match_plain_ones(photo_dirs, backbone, tmp_path):
    """The fp16 path of the updates (GradScaler: scaled backward, unscale, clip, step;
    here a CPU scaler, the CUDA one behaves alike) gives the plain update's result; an
    overflowing scale skips the step and shrinks the scale."""
    cfg = make_config(photo_dirs, backbone, tmp_path)
    x = PhotoCrops(str(photo_dirs[0]), 32, seed=3).batch(0, 2)
    plain, scaled = make_trainer(cfg), make_trainer(cfg)
    scaled.scaler_g = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    a, b = plain.generator_step(x)[0], scaled.generator_step(x)[0]
    assert b["grad_g"] == pytest.approx(a["grad_g"], rel=1e-4)
    for (k, p), q in zip(plain.model.named_parameters(), scaled.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=k)
    before = snapshot(scaled.model.latent_codec)
    scaled.scaler_g = torch.amp.GradScaler("cpu", init_scale=1e38)  # gradients overflow
    scaled.generator_step(x)
    assert changed(before, snapshot(scaled.model.latent_codec)) == set()
    assert scaled.scaler_g.get_scale() < 1e38


def test_updates_alternate(photo_dirs, backbone, tmp_path):
    tr = make_trainer(make_config(photo_dirs, backbone, tmp_path))
    x = PhotoCrops(str(photo_dirs[0]), 32, seed=3).batch(0, 2)
    generator = names(tr.model, tr.g_params)
    quantiles = names(tr.model, tr.aux_params)
    assert generator and quantiles and not generator & quantiles
    assert all(k.endswith("quantiles") for k in quantiles)

    def state():
        return {**{f"model.{k}": v.detach().clone() for k, v in tr.model.named_parameters()},
                **{f"disc.{k}": v.detach().clone() for k, v in tr.disc.named_parameters()}}

    def moved(before):
        return changed(before, state())

    disc = {f"disc.{k}" for k, _ in tr.disc.named_parameters()}
    before = state()
    _, y0, y_r = tr.generator_step(x)
    g_moved = moved(before)
    assert g_moved and g_moved <= {f"model.{k}" for k in generator}
    before = state()
    tr.aux_step()
    assert moved(before) == {f"model.{k}" for k in quantiles}
    before = state()
    tr.discriminator_step(y0, y_r)
    assert moved(before) == disc  # every head moved, nothing of the model


def test_per_sample_draws_do_not_depend_on_the_split(photo_dirs, backbone, tmp_path):
    tr = make_trainer(make_config(photo_dirs, backbone, tmp_path))
    x = PhotoCrops(str(photo_dirs[0]), 32, seed=3).batch(0, 2)
    with torch.no_grad():
        whole = tr._forward(x)
        halves = []
        for rank in (0, 1):
            tr.dist = common.DistInfo(rank=rank, world_size=2)
            halves.append(tr._forward(x[rank:rank + 1]))
    for field in ("y0", "y_c", "y_r", "bpp"):
        torch.testing.assert_close(torch.cat([getattr(h, field) for h in halves]),
                                   getattr(whole, field), rtol=1e-5, atol=1e-5)
    assert not torch.equal(whole.y_r[0], whole.y_r[1])  # the start noise differs per image


@pytest.mark.slow
def test_resume_continues_the_same_run(photo_dirs, backbone, tmp_path):
    from safetensors.torch import load_file

    cfg = make_config(photo_dirs, backbone, tmp_path / "a", steps=2, ckpt_every=1)
    a = osdiff.train(cfg)
    assert (a / "config.json").is_file() and (a / "model.safetensors").is_file()
    rows = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r[c])) for r in rows for c in osdiff.LOG_COLUMNS)
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000
    assert json.loads((a / "config.json").read_text())["lambda_rate"] == cfg.lambda_rate

    cfg_b = dataclasses.replace(cfg, out=str(tmp_path / "b"))
    osdiff.train(cfg_b)
    (tmp_path / "b" / "checkpoints" / "step-2.pt").unlink()
    with pytest.raises(InputError, match="--resume"):
        osdiff.train(cfg_b)
    b = osdiff.train(dataclasses.replace(cfg_b, resume=True))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()
    with pytest.raises(InputError, match="other settings"):
        osdiff.train(dataclasses.replace(cfg_b, resume=True, lambda_rate=2.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
import json, sys
from gencodec.train.osdiff import OSDiffTrainConfig, train
train(OSDiffTrainConfig(**json.loads(open(sys.argv[1]).read())))
"""


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one(photo_dirs, backbone, tmp_path):
    from safetensors.torch import load_file

    single = make_config(photo_dirs, backbone, tmp_path / "single", steps=2, ckpt_every=2)
    one = load_file(str(osdiff.train(single) / "model.safetensors"))
    ddp = dataclasses.replace(single, out=str(tmp_path / "ddp"))
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.asdict(ddp)))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                          "2", "--master-port", str(_free_port()), str(tmp_path / "worker.py"),
                          str(tmp_path / "cfg.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    two = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    assert one.keys() == two.keys()
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=1e-4, atol=1e-5, msg=k)
    rows1 = list(csv.DictReader(open(tmp_path / "single" / "log.csv")))
    rows2 = list(csv.DictReader(open(tmp_path / "ddp" / "log.csv")))
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == ["1", "2"]
    for r1, r2 in zip(rows1, rows2):
        for c in ("loss", "diff", "rate", "feature", "gan", "d_loss"):
            assert float(r2[c]) == pytest.approx(float(r1[c]), rel=1e-4), c


def test_cli_help_and_one_line_errors(photo_dirs, backbone, tmp_path, capsys):
    from gencodec.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "osdiff", "--help"])
    assert exc.value.code == 0
    assert "example: gencodec train osdiff" in capsys.readouterr().out.replace("\n", " ")
    base = ["train", "osdiff", "--train", str(photo_dirs[0]), "--backbone", str(backbone[0]),
            "--codec-config", str(backbone[1]), "--batch", "2", "--disc-hidden", "8"]
    assert main([*base, "--out", str(tmp_path / "a"), "--crop", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert "multiple of 16" in err and len(err.splitlines()) == 1
    assert main([*base, "--out", str(tmp_path / "b"), "--optimizer", "adamw8bit",
                 "--device", "cpu", "--crop", "32"]) == 2
    assert "bitsandbytes" in capsys.readouterr().err
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    (tmp_path / "c" / "checkpoints" / "step-1.pt").write_bytes(b"")
    assert main([*base, "--out", str(tmp_path / "c"), "--crop", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and len(err.splitlines()) == 1
