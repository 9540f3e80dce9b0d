"""Learned metrics: weight files are found in TORCH_HOME / --weights-dir, built into
networks when present, and reported as unavailable (never substituted) when not."""

import numpy as np
import pytest
import torch

from gencodec.eval import learned
from gencodec.eval.metrics import LEARNED, MetricSuite


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"fake")
    return path


def test_no_weights_means_unavailable(torch_home):
    suite = MetricSuite(list(LEARNED))
    assert suite.names == []
    for name in LEARNED:
        assert suite.unavailable[name] == "unavailable (no local weights)"
        assert str(torch_home) in suite.details[name]


def test_resolver_finds_files_in_torch_home(torch_home):
    ck = torch_home / "hub" / "checkpoints"
    alex = _touch(ck / "alexnet-owt-7be5be79.pth")
    lin = _touch(torch_home / "hub" / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth")
    topiq = _touch(torch_home / "cfanet_fr_kadid_res50-2c4cc61d.pth")
    res = learned.resolve_weights("lpips-alex")
    assert res.complete and res.found == {"backbone": alex, "linear": lin}
    assert learned.resolve_weights("topiq-fr").found == {"model": topiq}
    vgg = learned.resolve_weights("lpips-vgg")
    assert not vgg.complete and set(vgg.missing) == {"backbone", "linear"}


def test_weights_dir_comes_first(torch_home, tmp_path):
    _touch(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")
    mine = _touch(tmp_path / "mine" / "vgg16-397923af.pth")
    assert learned.resolve_weights("dists", tmp_path / "mine").found["backbone"] == mine


def test_default_torch_home_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert learned.torch_home() == tmp_path / "torch"


def _fake_weights(ck):
    """Randomly initialised weights with the upstream files' names, keys and shapes."""
    ck.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for make, name in ((learned._alexnet_features, "alexnet-owt-7be5be79.pth"),
                       (learned._vgg16_features, "vgg16-397923af.pth")):
        torch.save({f"features.{k}": v for k, v in make().state_dict().items()}, ck / name)
    for net, chans in (("alex", (64, 192, 384, 256, 256)), ("vgg", (64, 128, 256, 512, 512))):
        torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
                    for i, c in enumerate(chans)}, ck / f"lpips_{net}.pth")
    torch.save({"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)},
               ck / "dists_weights.pt")


def test_fake_weights_build_networks(torch_home):
    _fake_weights(torch_home / "hub" / "checkpoints")
    suite = MetricSuite(["lpips-alex", "lpips-vgg", "dists", "topiq-fr"])
    assert suite.names == ["lpips-alex", "lpips-vgg", "dists"]
    assert suite.unavailable == {"topiq-fr": "unavailable (no local weights)"}
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.normal(0, 25, x.shape), 0, 255).astype(np.uint8)
    same, diff = suite(x, x), suite(x, y)
    for name in suite.names:  # distances: 0 for identical images, more for others
        assert same[name] == pytest.approx(0.0, abs=1e-5), name
        assert diff[name] > same[name] + 1e-4, name


def test_corrupt_weights_are_reported(torch_home):
    ck = torch_home / "hub" / "checkpoints"
    _touch(ck / "alexnet-owt-7be5be79.pth")
    _touch(ck / "lpips_alex.pth")
    suite = MetricSuite(["lpips-alex"])
    assert suite.unavailable["lpips-alex"] == "unavailable (local weights unusable)"
