"""CiD distillation on tiny random SD-layout models: losses, which network trains when,
resume, DDP, the saved student in the filter and in ``train rp``, errors."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="distillation needs gencodec[diffusion]")

from gencodec.diffusion.sd import vae_image, vae_latent  # noqa: E402
from gencodec.errors import InputError  # noqa: E402
from gencodec.filters.model import load_frame_model  # noqa: E402
from gencodec.train import distill  # noqa: E402
from gencodec.train.cid_networks import build_networks, load_teacher, save_student  # noqa: E402
from gencodec.train.distill import CiDConfig, CiDDistiller, DistillConfig  # noqa: E402

SIZE = 16  # multiple of the tiny model's 8


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny random epsilon-predicting teacher with its scheduler and static embedding."""
    from diffusers import DDPMScheduler

    from gencodec.filters.tiny import TINY, onestep_from_sizes

    d = tmp_path_factory.mktemp("teacher")
    onestep_from_sizes(TINY, seed=5, prediction_type="epsilon").save_pretrained(d)
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  prediction_type="epsilon").save_pretrained(d / "scheduler")
    return d


def make_config(teacher_dir, photo_dirs, out, steps=3, **cid) -> DistillConfig:
    base = dict(global_batch=2, lr_student=1e-3, lr_fake=1e-3, seed=7)
    base.update(cid)
    return DistillConfig(teacher=str(teacher_dir), train=str(photo_dirs[0]), out=str(out),
                         cid=CiDConfig(**base), size=SIZE, steps=steps, log_every=1,
                         ckpt_every=2)


def read_log(out) -> list[dict]:
    with open(Path(out) / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, after) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_steps_give_finite_changing_losses_and_a_filter_model(teacher_dir, photo_dirs, tmp_path):
    cfg = make_config(teacher_dir, photo_dirs, tmp_path / "run", steps=3)
    model_dir = distill.train(cfg)
    rows = read_log(cfg.out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for col in ("loss_fake", "L_id", "L_score", "L_cid", "mse_input"):
        values = [float(r[col]) for r in rows]
        assert all(math.isfinite(v) for v in values), (col, values)
        assert len(set(values)) == 3, (col, values)
    for r in rows:  # Eq. 3 with the default xi = 1
        assert float(r["L_cid"]) == pytest.approx(float(r["L_id"]) - float(r["L_score"]),
                                                  rel=1e-4, abs=1e-7)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    model = load_frame_model(model_dir)
    assert model.architecture == "onestep" and model.timestep == 625
    assert model.prediction_type == "epsilon"
    x = torch.rand(1, 3, 24, 32)
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_teacher_frozen_and_each_network_trains_on_its_own_step(teacher_dir):
    teacher = load_teacher(teacher_dir)
    real, fake, student = build_networks(teacher, t_init=625)
    trainer = CiDDistiller(real, fake, student, CiDConfig(global_batch=2, lr_student=1e-3,
                                                          lr_fake=1e-3),
                           alphas_cumprod=teacher.alphas_cumprod)
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    z_h = torch.randn(2, 4, 4, 4)
    t0, f0, s0, e0 = (state(m) for m in (trainer.teacher, trainer.fake, trainer.student,
                                         trainer.ema))

    trainer.fake_step(z_h)
    t1, f1, s1, e1 = (state(m) for m in (trainer.teacher, trainer.fake, trainer.student,
                                         trainer.ema))
    assert not changed(t0, t1) and not changed(s0, s1) and not changed(e0, e1)
    params = {k for k, _ in trainer.fake.named_parameters()}
    assert len(changed(f0, f1) & params) > 0.9 * len(params)

    trainer.student_step(z_h)
    t2, f2, s2, e2 = (state(m) for m in (trainer.teacher, trainer.fake, trainer.student,
                                         trainer.ema))
    assert not changed(t1, t2) and not changed(f1, f2)
    params = {k for k, _ in trainer.student.named_parameters()}
    assert len(changed(s1, s2) & params) > 0.9 * len(params)
    assert changed(e1, e2)  # the EMA follows the student
    for name, p in trainer.teacher.named_parameters():  # parameter by parameter
        assert p.grad is None and not p.requires_grad, name
        assert torch.equal(p, dict(real.named_parameters())[name])
    # the teacher's weights are those of the folder, untouched
    fresh = load_teacher(teacher_dir).unet.state_dict()
    for k, v in trainer.teacher.unet.state_dict().items():
        assert torch.equal(v, fresh[k]), k


def test_student_starts_as_the_filter_at_t_init(teacher_dir, tmp_path):
    """Before training, the saved student is the teacher at t_init: the filter's output
    equals decode(G(encode(x))) computed through the training code's latent path."""
    teacher = load_teacher(teacher_dir)
    _, _, student = build_networks(teacher, t_init=400)
    save_student(student, teacher, tmp_path / "s")
    model = load_frame_model(tmp_path / "s")
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        z0 = student(vae_latent(teacher.vae, x * 2.0 - 1.0))
        y = vae_image(teacher.vae, z0)
        expect = ((y + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(model(x), expect, rtol=1e-4, atol=1e-5)
    assert model.timestep == 400
    assert model.alpha_cumprod == pytest.approx(float(teacher.alphas_cumprod[400]))


@pytest.mark.slow
def test_resume_gives_the_identical_state(teacher_dir, photo_dirs, tmp_path):
    full = make_config(teacher_dir, photo_dirs, tmp_path / "full", steps=4)
    distill.train(full)
    part = make_config(teacher_dir, photo_dirs, tmp_path / "part", steps=2)
    distill.train(part)
    with pytest.raises(InputError, match="--resume"):
        distill.train(dataclasses.replace(part, steps=4))
    distill.train(dataclasses.replace(part, steps=4, resume=True))
    a = torch.load(tmp_path / "full" / "checkpoints" / "step-4.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoints" / "step-4.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:  # student, fake score network and EMA
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["extra"]["nimg"] == b["extra"]["nimg"] == 8
    assert read_log(tmp_path / "full") == read_log(tmp_path / "part")
    other = dataclasses.replace(part, steps=6, resume=True,
                                cid=dataclasses.replace(part.cid, xi=0.5))
    with pytest.raises(InputError, match="other settings"):
        distill.train(other)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one(teacher_dir, photo_dirs, tmp_path):
    # Adam's epsilon well above the gradients' rounding: with beta1 = 0 and a tiny
    # epsilon, Adam moves a weight whose gradient is ~0 by up to a full step on the sign
    # of that rounding, which summation order (all-reduce vs one batch) decides
    one = make_config(teacher_dir, photo_dirs, tmp_path / "one", steps=2, global_batch=4,
                      adam_eps=1e-3)
    distill.train(one)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "gencodec.cli.main", "train", "distill",
           "--teacher", str(teacher_dir), "--train", str(photo_dirs[0]),
           "--out", str(tmp_path / "two"), "--size", str(SIZE), "--steps", "2",
           "--batch", "4", "--lr", "1e-3", "--lr-fake", "1e-3", "--seed", "7",
           "--adam-eps", "1e-3",
           "--log-every", "1", "--ckpt-every", "2", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoints" / "step-2.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoints" / "step-2.pt", weights_only=True)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-6)
    for r1, r2 in zip(read_log(tmp_path / "one"), read_log(tmp_path / "two"), strict=True):
        for col in distill.LOG_COLUMNS:
            if not col.startswith("grad"):  # norms of per-rank vs all-reduced gradients
                assert float(r2[col]) == pytest.approx(float(r1[col]), rel=1e-4, abs=1e-7)


@pytest.mark.slow
def test_distilled_student_chains_into_preprocess_and_rp(teacher_dir, photo_dirs, tmp_path,
                                                         standin):
    from PIL import Image

    from gencodec.cli.main import main
    from gencodec.train import rp

    model_dir = distill.train(make_config(teacher_dir, photo_dirs, tmp_path / "d", steps=1))
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)).save(src)
    assert main(["preprocess", str(src), "--model", str(model_dir), "--codec", "webp",
                 "-q", "70", "-o", str(tmp_path / "out.webp")]) == 0
    with Image.open(tmp_path / "out.webp") as im:
        assert im.size == (40, 24)
    cfg = rp.RPConfig(train=str(photo_dirs[0]), out=str(tmp_path / "rp"), codec="jpeg",
                      model=str(model_dir), steps=1, batch=2, crop=32, patch=64,
                      candidates_per_image=4, jnd_threshold=0.0, perceptual="dss",
                      log_every=1, ckpt_every=1, val_every=1000)
    tuned = load_frame_model(rp.train(cfg, surrogate=standin))
    assert tuned.architecture == "onestep" and tuned.timestep == 625


def test_bad_teachers_and_options_are_refused(teacher_dir, photo_dirs, tmp_path, onestep_dir):
    with pytest.raises(InputError, match="scheduler"):
        load_teacher(onestep_dir)  # a one-step model: no noise schedule
    with pytest.raises(InputError, match="multiple of 8"):
        distill.train(dataclasses.replace(make_config(teacher_dir, photo_dirs, tmp_path / "a"),
                                          size=12))
    with pytest.raises(InputError, match="t_min < t_max"):
        distill.train(make_config(teacher_dir, photo_dirs, tmp_path / "b", t_min=500,
                                  t_max=400))
    with pytest.raises(InputError, match="smaller than the crop"):
        distill.train(dataclasses.replace(make_config(teacher_dir, photo_dirs, tmp_path / "c"),
                                          size=128))
    with pytest.raises(InputError, match="t_init"):
        build_networks(load_teacher(teacher_dir), t_init=1000)


def _one_student_step(teacher_dir, checkpointing: bool, device: str = "cpu",
                      precision: str = "auto"):
    from gencodec.train import common

    teacher = load_teacher(teacher_dir)
    real, fake, student = build_networks(teacher, t_init=625)
    if checkpointing:
        for net in (real, fake, student.denoiser):
            net.unet.enable_gradient_checkpointing()
    trainer = CiDDistiller(real, fake, student, CiDConfig(global_batch=2, lr_student=1e-3),
                           alphas_cumprod=teacher.alphas_cumprod, precision=precision,
                           dist=common.DistInfo(device=torch.device(device)))
    logs = trainer.student_step(torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)))
    return logs, state(trainer.student)


def test_gradient_checkpointing_gives_the_same_update(teacher_dir):
    logs_a, a = _one_student_step(teacher_dir, checkpointing=False)
    logs_b, b = _one_student_step(teacher_dir, checkpointing=True)
    assert logs_b["L_cid"] == pytest.approx(logs_a["L_cid"], rel=1e-5)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_bf16_autocast_step_on_cuda(teacher_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    logs, _ = _one_student_step(teacher_dir, checkpointing=True, device="cuda", precision="bf16")
    assert all(math.isfinite(v) for v in logs.values()), logs
