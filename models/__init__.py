"""gencodec.models: the model registry (id -> architecture, weights source, sha256,
licence, card) and the small embedded default weights with their model cards.

``MODELS`` is a plain dict, as in CompressAI; entries are added as models ship. Paths
are relative to this folder; :func:`model_path` resolves one and checks its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
}


def model_path(model_id: str) -> Path:
    """The folder of a registered model, after checking its weights' sha256."""
    from gencodec.errors import InputError

    entry = MODELS[model_id]
    weights = _HERE / entry["weights"]
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise InputError(f"{model_id}: {weights} has sha256 {digest[:16]}..., the registry "
                         f"says {entry['sha256'][:16]}... (damaged install?)")
    return _HERE / entry["path"]
