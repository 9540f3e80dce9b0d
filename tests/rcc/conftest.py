"""Helpers for the reverse-channel coding tests."""

from __future__ import annotations

import numpy as np
import pytest

from gencodec import _native


def cuda_devices() -> int:
    return int(_native.build_info()["cuda_devices"])


requires_cuda = pytest.mark.skipif(
    cuda_devices() == 0, reason=f"no CUDA device ({_native.build_info()['cuda_error']})"
)


def random_chunk(d: int, seed: int, kl_per_dim: float = 0.05):
    """A q/p pair of the kind DiffC codes: q slightly narrower than p and shifted."""
    rng = np.random.default_rng(seed)
    mu_p = rng.normal(size=d)
    sigma_p = rng.uniform(0.5, 1.5, size=d)
    shift = np.sqrt(2.0 * kl_per_dim) * sigma_p
    mu_q = mu_p + shift * rng.choice([-1.0, 1.0], size=d)
    sigma_q = sigma_p * rng.uniform(0.8, 1.0, size=d)
    return mu_q, sigma_q, mu_p, sigma_p
