"""gencodec.models: the model registry (id -> architecture, weights source, sha256,
licence, card) and the small embedded default weights with their model cards.

``MODELS`` is a plain dict, as in CompressAI; entries are added as models ship. Paths
are relative to this folder; :func:`model_path` resolves one and checks its sha256.

The embedded default preprocessing model (:data:`DEFAULT_PREPROCESSOR`, the default
``--model`` of ``gencodec preprocess``, ``transcode``, ``pipe``, ``export`` and
``demo``) is a folder written by ``save_pretrained`` (``gencodec_filter.json`` and
``model.safetensors``) with its card, registered as::

    "gencodec-preprocess-v2": {
        "architecture": "compact",            # gencodec.filters.CompactFilterNet
        "path": "gencodec-preprocess-v2",
        "weights": "gencodec-preprocess-v2/model.safetensors",
        "sha256": "<sha256sum of the weights file>",
        "licence": "...",                     # the weights' licence and the data's
        "card": "gencodec-preprocess-v2/README.md",
        "config": "gencodec-preprocess-v2/gencodec_filter.json",   # optional: its
        "config_sha256": "<sha256sum of the config file>",          # config, checked too
    }

Until that entry exists, :func:`default_preprocessor_path` raises
:class:`NoDefaultModel`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gencodec.errors import InputError

_HERE = Path(__file__).resolve().parent

MODELS: dict[str, dict] = {
    "gaussian-spectral": {
        "architecture": "gaussian-spectral",
        "path": "gaussian-spectral",
        "weights": "gaussian-spectral/spectrum.safetensors",
        "sha256": "c1630dc4c0f7adf3c5510228bb6276fe3b8308b5642da497de656100858e1ead",
        "licence": "Apache-2.0 (second-order statistics of CC0 and GPL-2+ photos; no image "
                   "content)",
        "card": "gaussian-spectral/README.md",
    },
    "djpeg-rate": {
        "architecture": "djpeg-rate",
        "path": "djpeg-rate",
        "weights": "djpeg-rate/rate.safetensors",
        "sha256": "b582b7d8d37ef3e393b0a5aad8819b2ab80468189d216340fb80f0179863d4fa",
        "licence": "Apache-2.0 (3 calibration weights fitted on CC0 and GPL-2+ photos; no "
                   "image content)",
        "card": "djpeg-rate/README.md",
    },
    "dbpg-rate-b16-420": {
        "architecture": "dbpg-rate",
        "path": "dbpg-rate/b16-420",
        "weights": "dbpg-rate/b16-420/rate.safetensors",
        "sha256": "de7263d470b7a9a8183a2824ffc1736c1286157d7eb796c1e0876d7051dff294",
        "licence": "Apache-2.0 (rate-model parameters fitted on CC0 and GPL-2+ photos; no "
                   "image content)",
        "card": "dbpg-rate/README.md",
    },
    "gencodec-preprocess-v1": {
        "architecture": "compact",
        "path": "gencodec-preprocess-v1",
        "weights": "gencodec-preprocess-v1/model.safetensors",
        "sha256": "8a60c938dfafca8b4f81e07437530df5657fb0b563286aee316ad67eb0f7f4ee",
        "licence": "Apache-2.0 (12,764 weights trained on CC0 and GPL-2+ photos; no image "
                   "content)",
        "card": "gencodec-preprocess-v1/README.md",
        "config": "gencodec-preprocess-v1/gencodec_filter.json",
        "config_sha256": "43c450187b0fdbe7b7fd559eeef0a1709cf80ba2510bd1f682dc0833826326d2",
    },
    "gencodec-preprocess-v2": {
        "architecture": "compact",
        "path": "gencodec-preprocess-v2",
        "weights": "gencodec-preprocess-v2/model.safetensors",
        "sha256": "8a60c938dfafca8b4f81e07437530df5657fb0b563286aee316ad67eb0f7f4ee",
        "licence": "Apache-2.0 (12,764 weights trained on CC0 and GPL-2+ photos; no image "
                   "content)",
        "card": "gencodec-preprocess-v2/README.md",
        "config": "gencodec-preprocess-v2/gencodec_filter.json",
        "config_sha256": "032b821734bffca460fca025c02a88aaae5c7436861061625c60686b76c2e771",
    },
}


#: The registry id of the embedded default preprocessing model.
DEFAULT_PREPROCESSOR = "gencodec-preprocess-v2"


class NoDefaultModel(InputError):
    """No default preprocessing model is installed (its registry entry is absent)."""


def model_path(model_id: str) -> Path:
    """The folder of a registered model, after checking the sha256 of its weights and,
    where the entry names one (``config``, ``config_sha256``), of its config: two
    entries may share weights and differ in their config alone."""
    entry = MODELS[model_id]
    _check_sha256(model_id, "weights", _HERE / entry["weights"], entry["sha256"])
    if "config" in entry:
        _check_sha256(model_id, "config", _HERE / entry["config"], entry["config_sha256"])
    return _HERE / entry["path"]


def _check_sha256(model_id: str, what: str, path: Path, want: str) -> None:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{model_id}: cannot read its {what} {path}: "
                         f"{exc.strerror or exc} (damaged install?)") from None
    if digest != want:
        raise InputError(f"{model_id}: {path} has sha256 {digest[:16]}..., the registry "
                         f"says {want[:16]}... (damaged install?)")


def default_preprocessor_path() -> Path:
    """The folder of the default preprocessing model, its sha256 checked
    (:func:`model_path`); :class:`NoDefaultModel` when none is installed."""
    if DEFAULT_PREPROCESSOR not in MODELS:
        raise NoDefaultModel(f"no default preprocessing model is installed (the model "
                             f"registry has no {DEFAULT_PREPROCESSOR!r} entry): pass "
                             "--model with a model directory or hub id")
    return model_path(DEFAULT_PREPROCESSOR)
