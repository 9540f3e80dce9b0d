"""Produce the golden values of tests/eval/test_learned.py with the UPSTREAM code.

Not run by the tests (it needs the upstream packages, which need torchvision). It runs
``lpips`` 0.1.4, ``DISTS_pytorch`` 0.1 and pyiqa 0.1.16's ``CFANet`` (topiq_fr config,
timm 1.0.31 ``resnet50(features_only=True)`` backbone) on weights drawn from numpy
seeds by ``test_learned.numpy_weights`` and saved under the upstream file names, and
prints their outputs (float64 and float32) next to gencodec's.

    pip download --no-deps lpips==0.1.4 DISTS_pytorch==0.1 pyiqa==0.1.16 timm==1.0.31 -d W
    for w in W/*.whl; do unzip -qo "$w" -d W/src; done
    .venv/bin/python tests/eval/data/make_learned_golden.py W/src

torchvision has no build for the pinned CPU torch, so a throw-away stand-in is written
to a temporary folder and put on ``sys.path`` for this process only: ``models.alexnet``
and ``models.vgg16`` build torchvision's layouts (``features`` loaded from the saved
checkpoint), and inert placeholders stand for the names timm imports at module level
but that this path never calls. pyiqa's own ``__init__`` pulls in every metric, so only
its ``archs/topiq_arch.py``, ``archs/arch_util.py``, ``archs/constants.py`` and
``default_model_configs.py`` are used, with stubs
for the registry, the downloader and the CLIP/Swin/face helpers (unused by topiq_fr).
"""

import importlib.util
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

FAKE = {
    "torchvision/__init__.py": "from . import models, ops, transforms, utils, datasets\n",
    "torchvision/_dummy.py": """
        class _Meta(type):
            def __getattr__(cls, name):
                return cls
        class Dummy(metaclass=_Meta):
            def __init__(self, *a, **k):
                raise RuntimeError("stand-in torchvision")
        def module_getattr(name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Dummy
        """,
    "torchvision/models/__init__.py": """
        import os, torch, torch.nn as nn
        def _features(cfg):
            layers, c = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                    c = v
            return nn.Sequential(*layers)
        class _Net(nn.Module):
            def __init__(self, features, name):
                super().__init__()
                self.features = features
                path = os.environ["FAKE_TV_" + name]
                state = {k[9:]: v for k, v in torch.load(path).items()}
                self.features.load_state_dict(state, strict=True)
        def alexnet(pretrained=False, **kw):
            assert pretrained
            f = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
            return _Net(f, "ALEX")
        def vgg16(pretrained=False, **kw):
            assert pretrained
            return _Net(_features([64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                   512, 512, 512, "M", 512, 512, 512, "M"]), "VGG")
        """,
    "torchvision/models/feature_extraction.py":
        "from .._dummy import module_getattr as __getattr__\n",
    "torchvision/ops/__init__.py": "from . import misc\n",
    "torchvision/ops/misc.py": "from .._dummy import Dummy as FrozenBatchNorm2d\n",
    "torchvision/transforms/__init__.py":
        "from . import functional\nfrom .._dummy import module_getattr as __getattr__\n",
    "torchvision/transforms/functional.py": """
        import enum
        from .._dummy import module_getattr as __getattr__
        class InterpolationMode(enum.Enum):
            NEAREST, NEAREST_EXACT, BILINEAR, BICUBIC, BOX, HAMMING, LANCZOS = range(7)
        """,
    "torchvision/utils.py": "from ._dummy import module_getattr as __getattr__\n",
    "torchvision/datasets.py": "from ._dummy import module_getattr as __getattr__\n",
    "pyiqa/__init__.py": "", "pyiqa/archs/__init__.py": "", "pyiqa/utils/__init__.py": "",
    "pyiqa/utils/registry.py":
        "class _R:\n    def register(self):\n        return lambda c: c\nARCH_REGISTRY = _R()\n",
    "pyiqa/utils/download_util.py": "DEFAULT_CACHE_DIR = None\n"
                                    "def load_file_from_url(*a, **k):\n    raise RuntimeError\n",
    "pyiqa/archs/clip_model.py": "load = None\n",
    "pyiqa/archs/topiq_swin.py": "create_swin = None\n",
    "facexlib/__init__.py": "", "facexlib/utils/__init__.py": "",
    "facexlib/utils/face_restoration_helper.py": "FaceRestoreHelper = None\n",
}


def main(src: Path, tmp: Path) -> None:
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("test_learned", here.parent / "test_learned.py")
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    site = tmp / "site"
    for rel, text in FAKE.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(textwrap.dedent(text))
    for name in ("archs/topiq_arch.py", "archs/arch_util.py", "archs/constants.py",
                 "default_model_configs.py"):
        (site / "pyiqa" / name).write_text((src / "pyiqa" / name).read_text())
    for name in ("timm", "lpips", "DISTS_pytorch"):
        (site / name).symlink_to(src / name)
    sys.path[:0] = [str(site)]

    import lpips
    from DISTS_pytorch import DISTS
    from pyiqa.archs.topiq_arch import CFANet
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    ck = tmp / "weights"
    tl.write_numpy_weights(ck)  # the same files the test writes, upstream names
    os.environ["FAKE_TV_ALEX"] = str(ck / "alexnet-owt-7be5be79.pth")
    os.environ["FAKE_TV_VGG"] = str(ck / "vgg16-397923af.pth")
    ups = {}
    for net in ("alex", "vgg"):
        path = ck / f"LPIPS_v0.1_{net}-{tl.LPIPS_HASH[net]}.pth"
        m = lpips.LPIPS(net=net, model_path=str(path), verbose=False)
        # lpips loads with strict=False: check the linear layers really came from the file
        assert all(torch.equal(m.state_dict()[k], v) for k, v in torch.load(path).items())
        ups[f"lpips-{net}"] = m
    dists = DISTS(load_weights=False)
    ab = torch.load(ck / "DISTS_weights-f5e65c96.pth")
    dists.alpha.data, dists.beta.data = ab["alpha"], ab["beta"]
    ups["dists"] = dists
    cfg = dict(DEFAULT_CONFIGS["topiq_fr"]["metric_opts"])
    assert cfg.pop("type") == "CFANet"
    topiq = CFANet(**cfg, backbone_pretrain=False, pretrained=False).eval()
    state = torch.load(ck / "cfanet_fr_kadid_res50-2c4cc61d.pth")["params"]
    topiq.load_state_dict(state, strict=True)  # what pyiqa's default download path does
    ups["topiq-fr"] = topiq
    report, golden = run(ups, tl, ck)
    print(report)
    print("GOLDEN = {")
    for name, values in golden.items():
        print(f"    {name!r}: {values!r},")
    print("}")


def run(ups, tl, ck):
    """Upstream vs gencodec on every pair, float64 then float32; returns the report
    and the float64 upstream values (the golden values)."""
    from gencodec.eval.metrics import to_tensor

    lines, golden = [], {}
    for dtype in (torch.float64, torch.float32):
        for name, up in ups.items():
            up, ours = up.to(dtype), tl.build(name, ck).to(dtype)
            kw = {"normalize": True} if name.startswith("lpips") else {}  # inputs in [0, 1]
            worst = [0.0, 0.0]
            for ref, dis in tl.image_pairs():
                r, d = (to_tensor(a).to(dtype) for a in (ref, dis))
                with torch.no_grad():
                    u, o = float(up(d, r, **kw)), float(ours(d, r))
                if dtype == torch.float64:
                    golden.setdefault(name, []).append(u)
                worst = [max(worst[0], abs(u - o)), max(worst[1], abs(u - o) / abs(u))]
                lines.append(f"{str(dtype)[6:]} {name:10s} {ref.shape}: upstream {u!r} "
                             f"gencodec {o!r}")
            lines.append(f"{str(dtype)[6:]} {name:10s} max abs diff {worst[0]:.3g}, "
                         f"max rel diff {worst[1]:.3g}")
    return "\n".join(lines), golden


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]).resolve(), Path(tmp))
