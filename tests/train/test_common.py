"""Shared training machinery: checkpoints with RNG state, CSV resume, plots, precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gencodec.train import common


def small_run():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-8)
    return model, opt, sched


def step(model, opt, sched):
    x = torch.randn(16, 4)
    loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def test_checkpoint_resume_continues_the_same_run(tmp_path):
    common.seed_everything(7)
    model, opt, sched = small_run()
    for _ in range(3):
        step(model, opt, sched)
    path = common.save_checkpoint(tmp_path / "step-3.pt", model=model, optimizer=opt,
                                  scheduler=sched, step=3, extra={"note": "x"})
    assert not list(tmp_path.glob(".*.part"))  # written under a temporary name
    tail = [step(model, opt, sched) for _ in range(3)]
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    model2, opt2, sched2 = small_run()
    payload = common.restore_checkpoint(common.read_checkpoint(path), path, model=model2,
                                        optimizer=opt2, scheduler=sched2)
    assert payload["step"] == 3 and payload["extra"] == {"note": "x"}
    assert [step(model2, opt2, sched2) for _ in range(3)] == tail
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_trainable_only_checkpoint(tmp_path):
    model, opt, sched = small_run()
    model[0].requires_grad_(False)
    common.save_checkpoint(tmp_path / "step-1.pt", model=model, step=1, trainable_only=True)
    payload = torch.load(tmp_path / "step-1.pt", weights_only=True)
    assert set(payload["model"]) == {"2.weight", "2.bias"}
    other, _, _ = small_run()
    with torch.no_grad():
        other[2].weight.zero_()
    path = tmp_path / "step-1.pt"
    common.restore_checkpoint(common.read_checkpoint(path), path, model=other)
    assert torch.equal(other[2].weight, model[2].weight)


def test_latest_and_prune(tmp_path):
    assert common.latest_checkpoint(tmp_path) is None
    model, _, _ = small_run()
    for s in (5, 20, 10):
        common.save_checkpoint(tmp_path / f"step-{s}.pt", model=model, step=s)
    (tmp_path / "step-x.pt").write_bytes(b"")
    assert common.latest_checkpoint(tmp_path).name == "step-20.pt"
    common.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-10.pt", "step-20.pt",
                                                                   "step-x.pt"]
    common.prune_checkpoints(tmp_path, keep=0)
    assert [p.name for p in tmp_path.glob("step-*.pt")] == ["step-x.pt"]


def test_csv_log_resume_drops_later_rows_and_plot(tmp_path):
    log = common.CsvLog(tmp_path / "log.csv", ["loss", "bd"])
    for s in range(1, 6):
        log.write(s, loss=1.0 / s)
    log.write(5, bd=-3.5)
    resumed = common.CsvLog(tmp_path / "log.csv", ["loss", "bd"], resume_step=3)
    assert [r["step"] for r in resumed.read()] == ["1", "2", "3"]
    resumed.write(4, loss=0.3)
    rows = resumed.read()
    assert rows[-1] == {"step": "4", "loss": "0.3", "bd": ""}
    png = common.plot_curves(tmp_path / "log.csv", tmp_path / "loss.png", ["loss", "bd"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_and_single_process_dist():
    cpu = torch.device("cpu")
    assert common.autocast_dtype(cpu, "auto") is None
    assert common.autocast_dtype(cpu, "bf16") is None  # the CPU always runs fp32
    assert common.grad_scaler(None) is None
    with pytest.raises(ValueError):
        common.autocast_dtype(cpu, "fp8")
    dist = common.ddp_setup("cpu")
    assert (dist.rank, dist.world_size, dist.is_main, dist.distributed) == (0, 1, True, False)
    common.ddp_teardown()


@pytest.mark.cuda
def test_cuda_autocast_dtype():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    dev = torch.device("cuda")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert common.autocast_dtype(dev, "auto") == want
    assert common.autocast_dtype(dev, "fp16") == torch.float16
    with common.autocast(dev, torch.float16):
        y = torch.nn.Linear(4, 4).cuda()(torch.randn(2, 4, device=dev))
    assert y.dtype == torch.float16
