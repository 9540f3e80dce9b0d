"""One torchrun process of the DDP test: ``ddp_worker.py CONFIG.json`` runs
:func:`gencodec.train.rp.train` with the stand-in surrogate (tests only)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from standin import StandInSurrogate  # noqa: E402

from gencodec.train.rp import RPConfig, train  # noqa: E402

if __name__ == "__main__":
    cfg = RPConfig(**json.loads(Path(sys.argv[1]).read_text()))
    train(cfg, surrogate=StandInSurrogate())
