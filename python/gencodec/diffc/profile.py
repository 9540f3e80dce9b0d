"""Coding profiles: everything besides the model weights that the decoder must share.

A profile is a small JSON file::

    {
      "format": "gencodec-diffc-profile", "version": 1,
      "timesteps": [999, 940, ..., 8],   # x_{t_0} is sent under p(x_T), then each next
      "kl_bits": [..],                   # mean D_KL per step measured by calibration
      "chunk_bits": 8,                   # k: PFR candidates per chunk = 2^k
      "padding_bits": 2.0,               # chunks = ceil(D_KL / (k - padding))
      "index_model": {"type": "zipf", "exponent": 1.17},
      "recon": "ddim", "ddim_steps": 50,
      "calibration": {...}               # how it was made (images, costs); informational
    }

Per-step budgets are adaptive by default: the encoder codes each step with as many
chunks as its actual D_KL needs and writes the count in the stream. With
``"budget": "fixed"`` they are the paper's "mean" schedule (appendix A.6): step k gets
``ceil(kl_bits[k] * D / kl_dims / (k - padding))`` chunks for a latent of D dimensions,
where ``kl_bits`` is the mean D_KL measured by calibration on latents of ``kl_dims``
dimensions; the encoder then never looks at the image's own D_KL to size a step.
The profile's sha256 over its canonical JSON goes into the stream fingerprint with the
model weights' sha256 (:func:`fingerprint`), so a stream names exactly what made it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from pathlib import Path

from gencodec.errors import InputError

FORMAT = "gencodec-diffc-profile"
VERSION = 1
RECON_METHODS = ("ddim", "ancestral", "x0")
BUDGETS = ("adaptive", "fixed")
PROFILE_FILE = "diffc_profile.json"
#: kl_bits are kept (and written) to this many decimals.
KL_DECIMALS = 3


@dataclasses.dataclass(frozen=True)
class Profile:
    timesteps: tuple[int, ...]
    chunk_bits: int = 8
    padding_bits: float = 2.0
    zipf_exponent: float | None = None
    kl_bits: tuple[float, ...] | None = None
    recon: str = "ddim"
    ddim_steps: int = 50
    calibration: dict = dataclasses.field(default_factory=dict)
    budget: str = "adaptive"
    kl_dims: int | None = None

    def __post_init__(self):
        ts = self.timesteps
        if not ts or any(b >= a for a, b in zip(ts, ts[1:])) or ts[-1] < 0:
            raise InputError(f"profile timesteps must be strictly decreasing and >= 0: {ts}")
        if not 2 <= self.chunk_bits <= 20:
            raise InputError(f"profile chunk_bits {self.chunk_bits} is outside 2..20")
        if not 0 <= self.padding_bits < self.chunk_bits - 1:
            raise InputError(f"profile padding_bits {self.padding_bits} must be in "
                             f"0..chunk_bits-1")
        if self.zipf_exponent is not None and not (
                isinstance(self.zipf_exponent, numbers.Real)
                and math.isfinite(self.zipf_exponent)):
            raise InputError(f"profile index_model exponent {self.zipf_exponent!r} must be a "
                             "finite number")
        if self.ddim_steps < 1:
            raise InputError(f"profile ddim_steps {self.ddim_steps} must be >= 1")
        if self.recon not in RECON_METHODS:
            raise InputError(f"profile recon {self.recon!r} is not one of {RECON_METHODS}")
        if self.kl_bits is not None:
            if len(self.kl_bits) != len(ts):
                raise InputError("profile kl_bits must have one entry per timestep")
            # held as saved (and fingerprinted): a fixed budget computed from the
            # unrounded values could differ from the one a decoder loads from the file
            object.__setattr__(self, "kl_bits", tuple(round(float(v), KL_DECIMALS)
                                                      for v in self.kl_bits))
        if self.budget not in BUDGETS:
            raise InputError(f"profile budget {self.budget!r} is not one of {BUDGETS}")
        if self.budget == "fixed" and (self.kl_bits is None or not self.kl_dims):
            raise InputError("a fixed-budget profile needs kl_bits and kl_dims (calibrate it)")

    def fixed_chunks(self, k: int, n_dims: int) -> int | None:
        """Chunks of step ``k`` for a latent of ``n_dims`` dimensions under a fixed
        budget (the "mean" schedule; at most one chunk per dimension), or None when
        budgets are adaptive."""
        if self.budget != "fixed":
            return None
        from gencodec.rcc import n_chunks_for

        return min(n_chunks_for(self.kl_bits[k] * n_dims / self.kl_dims, self.chunk_bits,
                                self.padding_bits), n_dims)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def exponent(self) -> float:
        """Exponent s of the Zipf model p(n) ~ (n + 1)^-s of a chunk's PFR index.
        Uncalibrated: 1 + 1/(k - padding), the PFR bound's lambda = D_KL per chunk."""
        if self.zipf_exponent is not None:
            return self.zipf_exponent
        return 1.0 + 1.0 / (self.chunk_bits - self.padding_bits)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, "timesteps": list(self.timesteps),
             "chunk_bits": self.chunk_bits, "padding_bits": self.padding_bits,
             "index_model": {"type": "zipf", "exponent": self.zipf_exponent},
             "recon": self.recon, "ddim_steps": self.ddim_steps}
        if self.kl_bits is not None:
            d["kl_bits"] = list(self.kl_bits)
        if self.kl_dims is not None:
            d["kl_dims"] = int(self.kl_dims)
        if self.budget != "adaptive":  # absent means adaptive
            d["budget"] = self.budget
        if self.calibration:
            d["calibration"] = self.calibration
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        if not isinstance(d, dict):
            raise InputError(f"not a DiffC profile (a JSON {type(d).__name__}, not an object)")
        if d.get("format") != FORMAT:
            raise InputError(f"not a DiffC profile (format {d.get('format')!r})")
        if d.get("version") != VERSION:
            raise InputError(f"DiffC profile version {d.get('version')} is not {VERSION}")
        index = d.get("index_model") or {}
        if not isinstance(index, dict) or index.get("type", "zipf") != "zipf":
            raise InputError(f"unknown index model {index!r}")
        kl = d.get("kl_bits")
        timesteps = d["timesteps"]
        if not isinstance(timesteps, list):
            raise InputError(f"profile timesteps must be a list, got {timesteps!r}")
        return cls(timesteps=tuple(_integer(t, "timesteps") for t in timesteps),
                   chunk_bits=_integer(d.get("chunk_bits", 8), "chunk_bits"),
                   padding_bits=float(d.get("padding_bits", 2.0)),
                   zipf_exponent=index.get("exponent"),
                   kl_bits=None if kl is None else tuple(float(v) for v in kl),
                   recon=d.get("recon", "ddim"),
                   ddim_steps=_integer(d.get("ddim_steps", 50), "ddim_steps"),
                   calibration=d.get("calibration", {}),
                   budget=d.get("budget", "adaptive"),
                   kl_dims=None if d.get("kl_dims") is None else _integer(d["kl_dims"],
                                                                         "kl_dims"))

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise InputError(f"{path}: {exc}") from None
            raise InputError(f"{path}: unreadable DiffC profile: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (replacing ``path``, as ``save_pretrained`` does)."""
        from gencodec.imageio import write_bytes_atomic

        write_bytes_atomic(path, self.to_json().encode(), force=True)

    def sha256(self) -> bytes:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).digest()

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)


def _integer(value, name: str) -> int:
    """A JSON integer (a float or a string is refused rather than silently rounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"profile {name} must hold integers, got {value!r}")
    return value


def default_profile(num_timesteps: int = 1000, num_steps: int = 20, chunk_bits: int = 16
                    ) -> Profile:
    """An uncalibrated schedule (for models without a shipped profile): ``num_steps``
    timesteps spaced geometrically from T-1 down to 1 (denser at low noise)."""
    import numpy as np

    ts = np.unique(np.rint(np.geomspace(1, num_timesteps - 1, num_steps)).astype(int))[::-1]
    return Profile(timesteps=tuple(int(t) for t in ts), chunk_bits=chunk_bits,
                   calibration={"note": "uncalibrated default; run 'gencodec diffc calibrate'"})


def fingerprint(weights_sha256: bytes, profile: Profile) -> bytes:
    """The 32-byte container fingerprint: sha256(weights sha256 || profile sha256)."""
    return hashlib.sha256(weights_sha256 + profile.sha256()).digest()
