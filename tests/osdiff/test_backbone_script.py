"""scripts/train_osdiff_backbone.py on a tiny random photo with tiny sizes: both stages
train (finite losses, weights move), the folder it writes loads with
``OSDiff.from_backbone`` and codes, and its command line refuses bad output folders."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gencodec.diffusion.sd import latent_scaling
from gencodec.imageio import save_image
from gencodec.osdiff.model import OSDiff, OSDiffConfig

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("train_osdiff_backbone",
                                               ROOT / "scripts" / "train_osdiff_backbone.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

TINY_ARGS = ["--crop", "16", "--short-side", "0", "--vae-channels", "8,8",
             "--unet-channels", "8,16", "--groups", "4", "--cross-dim", "8", "--head-dim", "2",
             "--vae-steps", "2", "--unet-steps", "2", "--batch", "2", "--log-every", "1",
             "--ckpt-every", "2"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    save_image(folder / "noise.png", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return folder


def _copy(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


@pytest.mark.slow
def test_stages_train_and_the_folder_loads_in_osdiff(photos, tmp_path):
    out = tmp_path / "backbone"
    crops = script.PhotoCrops(str(photos), 16, seed=0)
    torch.manual_seed(0)
    vae = script.build_vae((8, 8), groups=4)
    start = _copy(vae)
    rows = script.train_vae(vae, crops, steps=2, batch=2, lr=1e-3, kl_weight=1e-4, out=out,
                            log_every=1, ckpt_every=2)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[c]) for r in rows for c in script.VAE_COLUMNS)
    assert _changed(start, vae)
    assert (out / "vae_loss.png").is_file() and (out / "checkpoints" / "vae-000002.pt").is_file()
    assert len((out / "vae_log.csv").read_text().splitlines()) == 3

    scale = script.set_latent_scale(vae, crops, batches=2, batch=2)
    assert math.isfinite(scale) and scale > 0 and vae.config.scaling_factor == scale

    unet, sched = script.build_unet((8, 16), 4, 8, 2), script.build_scheduler()
    start = _copy(unet)
    rows = script.train_unet(unet, vae, sched, crops, steps=2, batch=2, lr=1e-3, out=out,
                             log_every=10)  # the last step is logged all the same
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert _changed(start, unet)
    assert all(not p.requires_grad for p in vae.parameters())

    script.save_backbone(out, vae=vae, unet=unet, scheduler=sched)
    model = OSDiff.from_backbone(out, OSDiffConfig.tiny())
    assert latent_scaling(model.vae) == (pytest.approx(scale), 0.0)
    assert model.prediction_type == "epsilon" and model.vae_factor == 2
    for saved, trained in ((model.vae, vae), (model.unet, unet)):
        ref = trained.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in saved.state_dict().items())
    x = crops.batch(0, 1)[:, :, :16, :16].repeat(1, 1, 2, 2)
    with torch.no_grad():
        result = model(x, training=False, decode=True)
    assert torch.isfinite(result.bpp).all() and result.x_hat.shape == x.shape


@pytest.mark.slow
def test_command_line_writes_a_loadable_backbone(photos, tmp_path):
    out = tmp_path / "cli"
    assert script.main(["--train", str(photos), "--out", str(out), *TINY_ARGS]) == 0
    for part in ("vae", "unet", "scheduler"):
        assert (out / part).is_dir()
    for log in ("vae_log.csv", "unet_log.csv", "vae_loss.png", "unet_loss.png"):
        assert (out / log).is_file()
    model = OSDiff.from_backbone(out, OSDiffConfig.tiny())
    assert model.unet.config.cross_attention_dim == 8
    # stage b again on the saved VAE
    assert script.main(["--train", str(photos), "--out", str(out), "--stage", "unet",
                        "--force", *TINY_ARGS]) == 0


def test_command_line_refuses_bad_outputs(photos, tmp_path, capsys):
    args = ["--train", str(photos), *TINY_ARGS]
    assert script.main([*args, "--out", str(ROOT / "ckpt-inside")]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert script.main([*args, "--out", str(tmp_path / "b"), "--stage", "unet"]) == 2
    assert "needs a trained VAE" in capsys.readouterr().err
    (tmp_path / "c" / "vae").mkdir(parents=True)
    assert script.main([*args, "--out", str(tmp_path / "c"), "--stage", "vae"]) == 2
    assert "exists" in capsys.readouterr().err
    assert script.main([*args, "--out", str(tmp_path / "d"), "--crop", "64"]) == 2
    assert "smaller than the crop" in capsys.readouterr().err
    assert not (ROOT / "ckpt-inside").exists()
