"""DDPM closed forms, the exact Gaussian spectral model and the Flux transform."""

from __future__ import annotations

import numpy as np
import pytest

from gencodec.diffusion import ddpm
from gencodec.diffusion.flux import (FlowBackbone, ddpm_to_flow_scale, eps_from_velocity,
                                     flow_sigma, pack_latents, unpack_latents)
from gencodec.diffusion.spectral import GaussianSpectral


def test_posterior_matches_forward_process():
    abar = ddpm.make_alphas_cumprod("scaled_linear")
    i, j = 700, 300
    post = ddpm.posterior(abar, i, j)
    # joint of (x_j, x_i) given x_0 = 1: check mean and variance of x_j | x_i by regression
    aj, sj = ddpm.signal_noise(abar, j)
    alpha = abar[i] / abar[j]
    cov_ji = sj ** 2 * np.sqrt(alpha)            # Cov(x_j, x_i | x_0)
    var_i = 1 - abar[i]
    assert post.B == pytest.approx(cov_ji / var_i)
    assert post.var == pytest.approx(sj ** 2 - cov_ji ** 2 / var_i)
    assert post.A == pytest.approx(aj - post.B * np.sqrt(abar[i]))


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedules_decrease(kind):
    abar = ddpm.make_alphas_cumprod(kind)
    assert abar.shape == (1000,) and np.all(np.diff(abar) < 0) and 0 < abar[-1] < abar[0] < 1


def test_v_prediction_to_eps():
    abar = ddpm.make_alphas_cumprod()
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((2, 50))
    a, s = ddpm.signal_noise(abar, 400)
    x_t, v = a * x0 + s * eps, a * eps - s * x0
    np.testing.assert_allclose(ddpm.eps_from_v(abar, 400, x_t, v), eps, atol=1e-12)


def test_spectral_reverse_is_exact(spectral):
    """p(x_j | x_i) integrates the prior: the law of total variance holds per coefficient."""
    P = spectral.power(8, 8)
    abar = spectral.alphas_cumprod
    i, j = 600, 200
    a_i, s_i = ddpm.signal_noise(abar, i)
    a_j, s_j = ddpm.signal_noise(abar, j)
    x_i = np.zeros((3, 8, 8), np.float32)
    _, sig = spectral.reverse(x_i, i, j)
    # E[x_j | x_i] is linear in x_i with gain g: the response to a unit x_i
    mu1, _ = spectral.reverse(np.ones((3, 8, 8), np.float32), i, j)
    gain = mu1.astype(np.float64)
    var_j = a_j ** 2 * P + s_j ** 2
    var_i = a_i ** 2 * P + s_i ** 2
    np.testing.assert_allclose(sig.astype(np.float64) ** 2 + gain ** 2 * var_i, var_j, rtol=2e-4)
    # the Wiener eps: E[eps | x_i] = s_i x_i / var_i
    np.testing.assert_allclose(spectral.eps(np.ones((3, 8, 8), np.float32), i),
                               s_i / var_i, rtol=1e-5)


def test_spectral_image_round_trip(spectral, photo32):
    x0 = spectral.encode_image(photo32)
    assert x0.shape == (3, 32, 32)
    assert np.abs(spectral.decode_latent(x0).astype(int) - photo32).max() <= 1


def test_flux_snr_matching():
    abar = ddpm.make_alphas_cumprod()
    for t in (0, 10, 250, 500, 999):
        s = flow_sigma(abar[t])
        snr_flow = (1 - s) ** 2 / s ** 2
        assert snr_flow == pytest.approx(abar[t] / (1 - abar[t]), rel=1e-9)
        assert ddpm_to_flow_scale(abar[t]) * (1 - s) == pytest.approx(np.sqrt(abar[t]))
    rng = np.random.default_rng(1)
    x0, eps = rng.standard_normal((2, 40))
    a, s_ = ddpm.signal_noise(abar, 300)
    x_t = a * x0 + s_ * eps
    sig = flow_sigma(abar[300])
    x_flow = x_t / ddpm_to_flow_scale(abar[300])
    np.testing.assert_allclose(x_flow, (1 - sig) * x0 + sig * eps, atol=1e-12)
    np.testing.assert_allclose(eps_from_velocity(x_flow, sig, eps - x0), eps, atol=1e-12)


class _GaussianFlow(FlowBackbone):
    """Stand-in velocity model: the exact OT-flow velocity E[eps - x_0 | x_s] of
    x_0 ~ N(0, P) coefficient-wise (what a perfect Flux would predict)."""

    def __init__(self, spectral, shape):
        self.alphas_cumprod = spectral.alphas_cumprod
        self.P = spectral.power(*shape[1:])

    def velocity(self, x, s):
        var = (1 - s) ** 2 * self.P + s ** 2
        return (s - (1 - s) * self.P) / var * x  # Cov(eps - x0, x_s) / Var(x_s) * x_s

    weights_sha256 = latent_shape = encode_image = decode_latent = None


def test_flux_transform_recovers_exact_eps(spectral):
    """Through the A.3 transform, the exact flow velocity gives the exact DDPM eps."""
    shape = (3, 8, 8)
    flow = _GaussianFlow(spectral, shape)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    for t in (50, 400, 900):
        np.testing.assert_allclose(flow.eps(x, t), spectral.eps(x, t), rtol=1e-4, atol=1e-5)


def test_flux_packing_round_trip():
    torch = pytest.importorskip("torch")
    z = torch.randn(16, 8, 6)
    tokens = pack_latents(z)
    assert tokens.shape == (1, 12, 64)
    assert torch.equal(unpack_latents(tokens, 16, 8, 6), z)
