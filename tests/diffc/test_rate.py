"""Rate on a synthetic Gaussian source with a known spectrum: the bits written are
within 30% of the analytic sum of per-step KLs (the paper's overhead bound), at several
rates; the gap to the Gaussian R(D) (reverse water-filling) is printed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")

from gencodec.diffc.coder import DiffC
from gencodec.diffc.profile import Profile
from gencodec.diffusion.spectral import GaussianSpectral


def synthetic_model() -> GaussianSpectral:
    freqs = np.geomspace(1e-3, 0.7071, 16)
    power = 0.02 * freqs ** -1.6  # a 1/f^1.6 spectrum, as photos have
    tensors = {"freqs": freqs, "log_power": np.log(np.stack([power, power / 4, power / 8])),
               "colour_basis": np.eye(3), "colour_mean": np.zeros(3),
               "dc_std": np.full(3, 0.3)}
    return GaussianSpectral(tensors, {"architecture": "gaussian-spectral"}, name="synthetic")


def reverse_water_filling(P: np.ndarray, D_total: float) -> float:
    """Bits of the Gaussian R(D) for independent N(0, P_k) at total squared error D."""
    lo, hi = 0.0, float(P.max())
    for _ in range(100):
        theta = (lo + hi) / 2
        lo, hi = (theta, hi) if np.minimum(theta, P).sum() < D_total else (lo, theta)
    return float(0.5 * np.log2(P / np.minimum(theta, P)).sum())


@pytest.mark.parametrize("steps", [4, 5, 7])
def test_bits_near_analytic_kl(steps):
    model = synthetic_model()
    shape = (3, 64, 64)
    P = model.power(*shape[1:])
    x0 = (np.sqrt(P) * np.random.default_rng(steps).standard_normal(shape)).astype(np.float32)
    profile = Profile(timesteps=(999, 500, 250, 120, 60, 30, 15), chunk_bits=10)
    coder = DiffC(model, profile)
    enc = coder.encode_latent(x0, steps)
    kl = sum(s.kl_bits for s in enc.steps)
    bits = 8 * len(enc.payload)
    x_hat = coder.reconstruct(enc.x_t, profile.timesteps[steps - 1], shape, "x0")
    mse = float(np.sum((x_hat.astype(np.float64) - x0) ** 2))
    rd = reverse_water_filling(P, mse)
    print(f"\nsteps {steps}: KL {kl:.0f} bits, written {bits} bits ({bits / kl - 1:+.1%}), "
          f"R(D) at the x0 reconstruction's MSE {rd:.0f} bits ({bits / rd:.2f}x)")
    assert kl > 1500
    assert 0.95 * kl < bits < 1.3 * kl
