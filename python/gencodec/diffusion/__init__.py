"""Diffusion backbones behind one interface (:class:`~gencodec.diffusion.base.Backbone`).

:func:`load_backbone` takes a registry id (``gencodec.models.MODELS``), a local
directory or a Hugging Face hub id:

- ``gaussian-spectral`` (the default, embedded): :mod:`gencodec.diffusion.spectral`;
- a diffusers Stable Diffusion 1.5 / 2.1 / XL folder or hub id (``model_index.json``
  with unet/, vae/, scheduler/): :mod:`gencodec.diffusion.sd`;
- a diffusers Flux folder or hub id: :mod:`gencodec.diffusion.flux`.

Hub ids are fetched with huggingface_hub (``snapshot_download``), which honours
``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import json
from pathlib import Path

from gencodec.diffusion.base import Backbone
from gencodec.errors import InputError

DEFAULT_MODEL = "gaussian-spectral"

#: Registry architectures that are diffusion backbones (the registry also holds
#: preprocessing models and surrogate rate models).
BACKBONE_ARCHITECTURES = ("gaussian-spectral", "stable-diffusion", "flux")


def _architecture(path: Path) -> str:
    cfg = path / "config.json"
    if cfg.is_file():
        arch = json.loads(cfg.read_text()).get("architecture")
        if arch:
            return arch
    index = path / "model_index.json"
    if index.is_file():
        return _architecture_of_index(json.loads(index.read_text()))
    raise InputError(f"{path}: not a model folder (no config.json with an architecture, "
                     "no diffusers model_index.json)")


def _architecture_of_index(index: dict) -> str:
    cls = index.get("_class_name", "")
    return "flux" if "Flux" in cls else "stable-diffusion"


def registered_backbones() -> list[str]:
    """Registry ids of the embedded diffusion backbones."""
    from gencodec.models import MODELS

    return [m for m, e in MODELS.items() if e["architecture"] in BACKBONE_ARCHITECTURES]


def load_backbone(model: str | Path | None = None, device: str = "cpu", **options) -> Backbone:
    """Load a backbone by registry id, local directory or hub id."""
    from gencodec.models import MODELS, model_path

    model = str(model or DEFAULT_MODEL)
    if model in MODELS:
        arch = MODELS[model]["architecture"]
        if arch not in BACKBONE_ARCHITECTURES:
            raise InputError(f"{model}: a registered {arch} model, not a diffusion backbone "
                             f"(embedded backbones: {', '.join(registered_backbones())})")
        path = model_path(model)
    elif Path(model).is_dir():
        path, arch = Path(model), _architecture(Path(model))
    elif Path(model).exists() or model.startswith(("/", "./", "../", "~")):
        raise InputError(f"{model}: no such model folder (a model is a registry id, a "
                         "folder or a hub id)")
    else:
        path, arch = model, _hub_architecture(model)
    if arch == "gaussian-spectral":
        from gencodec.diffusion.spectral import GaussianSpectral

        if options:
            raise InputError(f"gaussian-spectral takes no options, got {sorted(options)}")
        return GaussianSpectral.from_pretrained(path, name=model, device=device)
    _check_torch_device(device)
    if arch == "stable-diffusion":
        from gencodec.diffusion.sd import StableDiffusion

        return StableDiffusion.from_pretrained(path, device=device, name=model, **options)
    if arch == "flux":
        from gencodec.diffusion.flux import Flux

        return Flux.from_pretrained(path, device=device, name=model, **options)
    raise InputError(f"{model}: unknown architecture {arch!r}")


def _check_torch_device(device: str) -> None:
    try:
        import torch

        torch.device(device)
    except ImportError:
        pass  # the backbone's own import reports the missing dependency
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps, "
                         f"...): {exc}") from None


def _hub_architecture(repo_id: str) -> str:
    try:
        from huggingface_hub import hf_hub_download

        return _architecture_of_index(json.loads(Path(
            hf_hub_download(repo_id, "model_index.json")).read_text()))
    except ImportError:
        raise InputError(f"{repo_id}: not a registry id or folder, and huggingface_hub is "
                         "not installed (pip install 'gencodec[diffusion]')") from None
    except Exception as exc:  # offline, unknown repo, no network
        raise InputError(f"{repo_id}: not a registry id or folder, and the hub gave no "
                         f"model_index.json ({type(exc).__name__}: {exc})") from None


__all__ = ["Backbone", "DEFAULT_MODEL", "load_backbone"]
