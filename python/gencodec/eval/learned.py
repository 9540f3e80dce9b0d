"""Learned perceptual metrics (LPIPS, DISTS, TOPIQ-fr) from *local* weights only.

Build and test machines have no network, so nothing here downloads. Two steps:

1. :func:`resolve_weights` looks for each metric's files (:data:`WEIGHT_FILES`, the
   names the upstream projects publish) in, in order: ``--weights-dir``,
   ``$TORCH_HOME/hub/checkpoints``, ``$TORCH_HOME/hub/pyiqa``, ``$TORCH_HOME``
   (``TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``, as
   torch.hub does).
2. :func:`load_metric` builds the network from those files. All three are written in
   plain PyTorch, so they need neither torchvision nor timm nor pyiqa: LPIPS and DISTS
   use torchvision's AlexNet / VGG16 ``features`` with the same layer indices (their
   torchvision checkpoints load as they are); TOPIQ-fr is :mod:`gencodec.eval.topiq`,
   whose names match pyiqa's checkpoint, loaded strictly as pyiqa does.

When a step fails the metric is reported as ``unavailable (<reason>)``: ``no local
weights`` with the missing file names, or ``local weights unusable`` with the loading
error. Nothing is substituted.

References: LPIPS v0.1, Zhang et al., CVPR 2018 (``lpips`` 0.1.4); DISTS, Ding et al.,
TPAMI 2020 (``DISTS_pytorch`` 0.1); TOPIQ, Chen et al., TIP 2024 (pyiqa 0.1.16
``topiq_fr``). What is verified: tests/eval/test_learned.py checks that these networks
reproduce the outputs of those upstream implementations (run once, outside the tests,
by tests/eval/data/make_learned_golden.py) to 1e-9 relative in float64, on
pseudo-random weights with the upstream files' names, keys and shapes, on two image
sizes. What is not: the published weights are not reachable here, so the scores with
the real weights are not compared with published values.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gencodec.eval.topiq import TopiqFR

#: metric -> role -> accepted file names (the first found wins).
WEIGHT_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "lpips-alex": {"backbone": ("alexnet-owt-7be5be79.pth",),
                   "linear": ("LPIPS_v0.1_alex-df73285e.pth", "lpips_alex.pth")},
    "lpips-vgg": {"backbone": ("vgg16-397923af.pth",),
                  "linear": ("LPIPS_v0.1_vgg-a78928a0.pth", "lpips_vgg.pth")},
    "dists": {"backbone": ("vgg16-397923af.pth",),
              "alpha_beta": ("DISTS_weights-f5e65c96.pth", "dists_weights.pt")},
    "topiq-fr": {"model": ("cfanet_fr_kadid_res50-2c4cc61d.pth",)},
}

NO_WEIGHTS = "no local weights"


def torch_home() -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache, "torch")


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for weight files, in order."""
    home = torch_home()
    dirs = [Path(weights_dir)] if weights_dir else []
    return dirs + [home / "hub" / "checkpoints", home / "hub" / "pyiqa", home]


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Which files of a metric were found (role -> path) and which are missing."""

    metric: str
    found: dict[str, Path]
    missing: dict[str, tuple[str, ...]]

    @property
    def complete(self) -> bool:
        return not self.missing

    def missing_files(self) -> str:
        """The missing files, for a message: ``"a.pth, b.pth or c.pth"``."""
        return ", ".join(" or ".join(v) for v in self.missing.values())


def resolve_weights(metric: str, weights_dir: str | os.PathLike | None = None) -> Resolution:
    """Find the weight files of ``metric`` in :func:`search_dirs` (no network)."""
    found, missing = {}, {}
    dirs = search_dirs(weights_dir)
    for role, names in WEIGHT_FILES[metric].items():
        hit = next((d / n for d in dirs for n in names if (d / n).is_file()), None)
        if hit is None:
            missing[role] = names
        else:
            found[role] = hit
    return Resolution(metric, found, missing)


def load_metric(metric: str, weights_dir=None):
    """``(fn(reference, distorted) -> float, "", "")``, or ``(None, reason, detail)``
    where ``reason`` is the short text of the results column (``"no local weights"``)
    and ``detail`` says what exactly is missing or wrong."""
    res = resolve_weights(metric, weights_dir)
    if not res.complete:
        dirs = ", ".join(str(d) for d in search_dirs(weights_dir))
        return None, NO_WEIGHTS, f"{res.missing_files()} not found in {dirs}"
    try:
        if metric.startswith("lpips-"):
            net = LPIPS(metric.split("-", 1)[1], res.found["backbone"], res.found["linear"])
        elif metric == "dists":
            net = DISTS(res.found["backbone"], res.found["alpha_beta"])
        else:
            net = TopiqFR.from_checkpoint(res.found["model"])
    except Exception as exc:  # a corrupt or mismatched file: say so, do not guess
        return None, "local weights unusable", f"{type(exc).__name__}: {exc}"
    return _numpy_metric(net), "", ""


def _numpy_metric(net):
    from gencodec.eval.metrics import to_tensor

    def fn(reference: np.ndarray, distorted: np.ndarray) -> float:
        with torch.inference_mode():
            return float(net(to_tensor(distorted), to_tensor(reference)))

    return fn


def _load_state(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


# -- backbones: torchvision's ``features`` layer for layer ------------------------------
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"]


def _vgg16_features():
    layers, c = [], 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


def _alexnet_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def _load_features(features, path: Path):
    """Load the ``features.*`` entries of a torchvision checkpoint (strict)."""
    state = {k[len("features."):]: v for k, v in _load_state(path).items()
             if k.startswith("features.")}
    features.load_state_dict(state, strict=True)
    return features.eval().requires_grad_(False)


# -- LPIPS -------------------------------------------------------------------------------
#: (backbone, ReLU outputs tapped, their channels), as in lpips.pretrained_networks.
_LPIPS_NETS = {"alex": (_alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
               "vgg": (_vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512))}


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018, eq. 1): unit-normalise each tapped feature map
    along channels, weight the squared difference by the learned linear layer, average
    over space and sum over layers. Inputs in [0, 1]; lower = more similar."""

    def __init__(self, net: str, backbone: Path, linear: Path):
        super().__init__()
        make, self.taps, chans = _LPIPS_NETS[net]
        self.features = _load_features(make()[: self.taps[-1] + 1], backbone)
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))
        state = _load_state(linear)
        self.lins = nn.ParameterList(
            [nn.Parameter(state[f"lin{i}.model.1.weight"].float().reshape(1, c, 1, 1))
             for i, c in enumerate(chans)])

    def _taps(self, x):
        x = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x, y):
        return sum(((a - b) ** 2 * w).sum(1).mean((1, 2))
                   for a, b, w in zip(self._taps(x), self._taps(y), self.lins))


# -- DISTS -------------------------------------------------------------------------------
class DISTS(nn.Module):
    """DISTS (Ding et al. 2020, eqs. 6-9): VGG16 with L2 pooling, per-channel structure
    and texture similarity of the input and five stages, weighted by the learned
    ``alpha``/``beta``. Inputs in [0, 1]; lower = more similar."""

    _CHANNELS = (3, 64, 128, 256, 512, 512)
    _STAGES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # torchvision indices

    def __init__(self, backbone: Path, alpha_beta: Path):
        super().__init__()
        feats = _load_features(_vgg16_features(), backbone)
        stages = []
        for k, (lo, hi) in enumerate(self._STAGES):  # max pooling -> L2 pooling
            layers = [_L2Pool(self._CHANNELS[k]) if isinstance(feats[i], nn.MaxPool2d)
                      else feats[i] for i in range(lo, hi)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        state = _load_state(alpha_beta)
        self.register_buffer("alpha", state["alpha"].float().reshape(1, -1, 1, 1))
        self.register_buffer("beta", state["beta"].float().reshape(1, -1, 1, 1))

    def _features(self, x):
        out = [x]  # the image itself, in [0, 1] (not normalised), as upstream
        x = (x - self.mean) / self.std
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x, y):
        c1 = c2 = 1e-6
        total = float(self.alpha.sum() + self.beta.sum())
        alphas = torch.split(self.alpha / total, self._CHANNELS, dim=1)
        betas = torch.split(self.beta / total, self._CHANNELS, dim=1)
        dist1 = dist2 = 0
        for fx, fy, a, b in zip(self._features(x), self._features(y), alphas, betas):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            vx = ((fx - mx) ** 2).mean((2, 3), keepdim=True)
            vy = ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            dist1 = dist1 + (a * s1).sum(1, keepdim=True)
            dist2 = dist2 + (b * s2).sum(1, keepdim=True)
        return (1 - (dist1 + dist2)).squeeze()


class _L2Pool(nn.Module):
    """L2 pooling of DISTS: sqrt(hann3x3 * x^2), stride 2 (replaces max pooling)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum()).expand(channels, 1, 3, 3).contiguous())

    def forward(self, x):
        out = F.conv2d(x ** 2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()
