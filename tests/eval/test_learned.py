"""Learned metrics: weight files are found in TORCH_HOME / --weights-dir, built into
networks when present, and reported as unavailable (never substituted) when not."""

import shutil
import zlib

import numpy as np
import pytest
import torch

from gencodec.eval import learned
from gencodec.eval.metrics import LEARNED, METRICS, MetricSuite, to_tensor
from gencodec.eval.topiq import TopiqFR


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


# -- code equivalence with the upstream implementations ---------------------------------
#: hashes in the upstream LPIPS linear-layer file names (as pyiqa publishes them).
LPIPS_HASH = {"alex": "df73285e", "vgg": "a78928a0"}
_LPIPS_CHANS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def numpy_weights(shapes: dict, seed: str, positive: bool = False) -> dict:
    """Portable pseudo-random weights: each entry drawn from its own numpy generator
    seeded by (file, key), so the result does not depend on key order or on torch's RNG.
    Kernels ~ N(0, 1/fan_in); norm scales 1 + N(0, 0.1^2); biases and running means
    N(0, 0.1^2); running variances U(0.5, 1.5); ``positive``: U(0, 1) (LPIPS / DISTS
    weights, which are non-negative upstream)."""
    out = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng([zlib.crc32(f"{seed}/{key}".encode())])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
            continue
        if positive:
            a = rng.uniform(0.0, 1.0, shape)
        elif key.endswith("running_var"):
            a = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            a = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        else:
            a = 0.1 * rng.standard_normal(shape) + (1.0 if key.endswith("weight") else 0.0)
        out[key] = torch.from_numpy(a.astype(np.float32))
    return out


def _shapes(state: dict, prefix: str = "") -> dict:
    return {prefix + k: tuple(v.shape) for k, v in state.items()}


def write_numpy_weights(ck):
    """All seven upstream files, with the upstream names, keys and shapes (the two
    torchvision backbones hold only their ``features.*`` entries, all that is read)."""
    ck.mkdir(parents=True, exist_ok=True)
    for make, name in ((learned._alexnet_features, "alexnet-owt-7be5be79.pth"),
                       (learned._vgg16_features, "vgg16-397923af.pth")):
        torch.save(numpy_weights(_shapes(make().state_dict(), "features."), name), ck / name)
    for net, chans in _LPIPS_CHANS.items():
        name = f"LPIPS_v0.1_{net}-{LPIPS_HASH[net]}.pth"
        shapes = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(chans)}
        torch.save(numpy_weights(shapes, name, positive=True), ck / name)
    name = "DISTS_weights-f5e65c96.pth"
    torch.save(numpy_weights({"alpha": (1, 1475, 1, 1), "beta": (1, 1475, 1, 1)}, name,
                             positive=True), ck / name)
    name = "cfanet_fr_kadid_res50-2c4cc61d.pth"
    torch.save({"params": numpy_weights(_shapes(TopiqFR().state_dict()), name)}, ck / name)


def build(metric: str, ck):
    """gencodec's network for ``metric`` from the files in ``ck``."""
    res = learned.resolve_weights(metric, ck)
    if metric.startswith("lpips-"):
        return learned.LPIPS(metric[6:], res.found["backbone"], res.found["linear"])
    if metric == "dists":
        return learned.DISTS(res.found["backbone"], res.found["alpha_beta"])
    return TopiqFR.from_checkpoint(res.found["model"])


def image_pairs():
    """(reference, distorted) uint8 pairs: 64x64 and a non-square 72x120."""
    rng = np.random.default_rng(2024)
    pairs = []
    for shape in ((64, 64, 3), (72, 120, 3)):
        ref = rng.integers(0, 256, shape, dtype=np.uint8)
        noise = rng.normal(0, 20, shape)
        pairs.append((ref, np.clip(ref + noise, 0, 255).astype(np.uint8)))
    return pairs


#: Outputs of the UPSTREAM implementations (lpips 0.1.4, DISTS_pytorch 0.1, pyiqa 0.1.16
#: CFANet ``topiq_fr`` on timm 1.0.31 resnet50), in float64, on :func:`write_numpy_weights`
#: and :func:`image_pairs`; produced by ``.venv/bin/python
#: tests/eval/data/make_learned_golden.py W/src`` (downloads and set-up in its docstring),
#: which also ran gencodec's networks: they agreed to 2.3e-16 relative or better.
GOLDEN = {
    "lpips-alex": [0.061235371233495116, 0.06281943225867855],
    "lpips-vgg": [0.06710068008237781, 0.07030825208700815],
    "dists": [0.0077026535654853845, 0.008456557808848908],
    "topiq-fr": [-0.33843140641770897, -0.451820212212783],
}


@pytest.fixture(scope="module")
def numpy_ck(tmp_path_factory):
    ck = tmp_path_factory.mktemp("weights")
    write_numpy_weights(ck)
    yield ck
    shutil.rmtree(ck)  # ~200 MB: not left in pytest's kept temporary folders


@pytest.mark.parametrize("metric", ["lpips-alex", "lpips-vgg", "dists", "topiq-fr"])
def test_matches_upstream_code(metric, numpy_ck):
    """Code equivalence with the upstream packages (float64, same weights and inputs)."""
    net = build(metric, numpy_ck).double()
    for (ref, dis), expected in zip(image_pairs(), GOLDEN[metric]):
        with torch.no_grad():
            got = float(net(to_tensor(dis).double(), to_tensor(ref).double()))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_suite_runs_learned_metrics_in_float32(torch_home, numpy_ck):
    """The evaluation path (float32, files found through TORCH_HOME) gives the same values
    to float32 precision, and 0 for identical images (LPIPS, DISTS)."""
    (torch_home / "hub").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints").symlink_to(numpy_ck)
    suite = MetricSuite(list(LEARNED))
    assert suite.names == list(LEARNED) and not suite.unavailable
    for i, (ref, dis) in enumerate(image_pairs()):
        got = suite(ref, dis)
        for name in LEARNED:
            assert got[name] == pytest.approx(GOLDEN[name][i], rel=1e-4, abs=1e-6), name
    ref = image_pairs()[0][0]
    same = suite(ref, ref)
    for name in ("lpips-alex", "lpips-vgg", "dists"):
        assert same[name] == pytest.approx(0.0, abs=1e-5), name


def test_directions_are_the_upstream_ones():
    """LPIPS and DISTS are distances; pyiqa's topiq_fr is a quality score (its config
    has no ``lower_better``), so higher is better."""
    assert [METRICS[n].higher_is_better for n in LEARNED] == [False, False, False, True]


def test_topiq_checkpoint_must_match_exactly(tmp_path):
    """As in pyiqa: the checkpoint is ``{"params": ...}``, a ``module.`` prefix is
    dropped, and it loads with strict=True (a partial file is refused)."""
    h_emb = torch.zeros(1, 128, 32, 1)
    torch.save({"h_emb": h_emb}, tmp_path / "bare.pth")
    with pytest.raises(KeyError, match="params"):
        TopiqFR.from_checkpoint(tmp_path / "bare.pth")
    torch.save({"params": {"module.h_emb": h_emb}}, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="Missing key") as err:
        TopiqFR.from_checkpoint(tmp_path / "partial.pth")
    assert "Unexpected key" not in str(err.value)


def test_corrupt_weights_are_reported(torch_home):
    ck = torch_home / "hub" / "checkpoints"
    _touch(ck / "alexnet-owt-7be5be79.pth")
    _touch(ck / "lpips_alex.pth")
    suite = MetricSuite(["lpips-alex"])
    assert suite.unavailable["lpips-alex"] == "unavailable (local weights unusable)"
