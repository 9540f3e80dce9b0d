"""The one interface every preprocessing network follows: :class:`FrameModel`.

A frame model maps a batch of RGB frames to a batch of RGB frames of the same size::

    y = model(x)    # x, y: float tensors N x 3 x H x W in [0, 1]

``H`` and ``W`` must be multiples of :attr:`FrameModel.multiple` (the runner pads);
:attr:`FrameModel.receptive_field` is the radius in pixels beyond which an output
pixel does not depend on the input, or ``None`` for networks with global operations
(GroupNorm, self-attention), which the runner then tiles with a wider blend.

A model directory holds ``gencodec_filter.json`` (``{"architecture": NAME, ...}``)
next to the weights; :func:`load_frame_model` reads it and dispatches to the class
registered under ``NAME`` in :data:`ARCHITECTURES`, as diffusers dispatches on
``_class_name``.
"""

import json
import os
from pathlib import Path

import torch

from gencodec.errors import InputError

#: The file that marks a gencodec filter model directory.
CONFIG_NAME = "gencodec_filter.json"


class FrameModel(torch.nn.Module):
    """Base class: a batch of RGB frames in [0, 1] in, the same out."""

    #: Height and width the network accepts must be multiples of this.
    multiple: int = 1
    #: Output pixels depend on inputs at most this far away (None: unbounded).
    receptive_field: int | None = None
    #: ``architecture`` value in the directory's config.
    architecture: str = ""
    #: Whether ``torch.jit.script`` compiles it (otherwise exports trace it).
    scriptable: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike) -> None:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike, **kw) -> "FrameModel":  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{self.architecture} ({n / 1e6:.2f} M parameters, multiple {self.multiple})"


def read_config(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the model config: {exc}") from None
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise InputError(f"{path}: not a gencodec filter config (no 'architecture')")
    return cfg


def write_config(directory: Path, cfg: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _architectures() -> dict[str, type[FrameModel]]:
    from gencodec.filters.compact import CompactFilterNet
    from gencodec.filters.onestep import OneStepDiffusion

    return {CompactFilterNet.architecture: CompactFilterNet,
            OneStepDiffusion.architecture: OneStepDiffusion}


NO_MODEL_MESSAGE = ("no preprocessing model given: the trained embedded default has not "
                    "shipped yet, so pass --model with a model directory (one holding "
                    f"{CONFIG_NAME}, or a diffusers one-step model with "
                    "prompt_embeds.safetensors) or a hub id")


def check_spec(spec: str | os.PathLike | None) -> str:
    """The local directory or hub id a model spec names (a registry id is replaced by
    its path), without loading or downloading anything; InputError where it can name
    nothing, so that commands refuse a typo before any work."""
    if spec is None or str(spec) == "":
        raise InputError(NO_MODEL_MESSAGE)
    from gencodec.models import MODELS

    spec = str(spec)
    if spec in MODELS:
        arch = MODELS[spec].get("architecture")
        if arch not in _architectures():  # a DiffC backbone, a codec's rate model, ...
            raise InputError(f"model {spec!r} is {_registry_kind(arch)}, not a "
                             "preprocessing model, which is a model directory holding "
                             f"{CONFIG_NAME} (or a hub id)")
        from gencodec.models import model_path

        spec = str(model_path(spec))
    path = Path(spec).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{spec}: is a file, not a model directory")
    if not path.is_dir() and (spec.count("/") != 1 or spec.startswith((".", "/", "~"))):
        raise InputError(f"model {spec!r}: no such directory, registry id or hub id "
                         f"(registry: {', '.join(MODELS) or 'empty'})")
    return spec


def _registry_kind(arch: str | None) -> str:
    """What a registry entry that is no preprocessing model is, for the message."""
    from gencodec.diffusion.spectral import ARCHITECTURE as SPECTRAL

    if arch == SPECTRAL:
        return (f"a DiffC model ({arch}; use it with 'gencodec encode --codec diffc' or "
                "'gencodec diffc')")
    return f"a {arch} model"


def load_frame_model(spec: str | os.PathLike | None, **kw) -> FrameModel:
    """Load a frame model from a local directory, a registry id or a hub id.

    * a directory with ``gencodec_filter.json``: the architecture it names;
    * a directory or hub id without it: a diffusers one-step model
      (:meth:`OneStepDiffusion.from_pretrained`, needs the static prompt embedding);
    * an id in :data:`gencodec.models.MODELS`: that entry's ``path``.

    Keyword arguments go to the architecture's ``from_pretrained``."""
    spec = check_spec(spec)
    archs = _architectures()
    path = Path(spec).expanduser()
    if not path.is_dir():
        from gencodec.filters.onestep import resolve

        path = resolve(spec)  # the hub snapshot (or the cache when offline)
    if (path / CONFIG_NAME).is_file():
        name = read_config(path)["architecture"]
        if name not in archs:
            raise InputError(f"{path}: unknown architecture {name!r}; "
                             f"known: {', '.join(archs)}")
        return archs[name].from_pretrained(path, **kw)
    return archs["onestep"].from_pretrained(path, **kw)
