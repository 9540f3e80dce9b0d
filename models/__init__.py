"""gencodec.models: the model registry (id -> architecture, weights source, sha256,
licence, card) and the small embedded default weights with their model cards.

``MODELS`` is a plain dict, as in CompressAI; entries are added as models ship."""

MODELS: dict[str, dict] = {}
