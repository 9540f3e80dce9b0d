"""The CiD losses (Eqs. 2, 3) and the exact Gaussian teacher, against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gencodec.diffusion.ddpm import make_alphas_cumprod
from gencodec.diffusion.spectral import GaussianSpectral
from gencodec.models import model_path
from gencodec.train.cid_loss import (add_noise, fake_score_loss, generator_losses,
                                     signal_noise, x0_from_prediction)
from gencodec.train.exact_teacher import (GaussianDenoiser, LinearStudent, radial_bins,
                                          radial_power, steepened_power)

ABAR = torch.from_numpy(make_alphas_cumprod())


def test_prediction_types_give_the_same_x0():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    t = torch.tensor([20, 500, 979])
    a, s = signal_noise(ABAR, t)
    z_t = add_noise(x0, eps, ABAR, t)
    v = a * eps - s * x0
    for ptype, out in (("epsilon", eps), ("v_prediction", v), ("sample", x0)):
        torch.testing.assert_close(x0_from_prediction(out, z_t, a, s, ptype), x0,
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prediction_type"):
        x0_from_prediction(eps, z_t, a, s, "flow")


def test_fake_score_loss_is_the_epsilon_mse():
    g = torch.Generator().manual_seed(1)
    x0, eps, eps_hat = (torch.randn(4, 4, 6, 6, generator=g) for _ in range(3))
    t = torch.tensor([30, 200, 640, 900])
    a, s = signal_noise(ABAR, t)
    z_t = add_noise(x0, eps, ABAR, t)
    x0_hat = x0_from_prediction(eps_hat, z_t, a, s, "epsilon")
    torch.testing.assert_close(fake_score_loss(x0_hat, x0, a, s), ((eps_hat - eps) ** 2).mean(),
                               rtol=1e-4, atol=1e-6)


def test_generator_losses_follow_eqs_2_and_3():
    g = torch.Generator().manual_seed(2)
    f_real, f_fake, z_h, z_g = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(4))
    d = f_real - f_fake
    for anchor, ref in (("input", z_h), ("student", z_g)):
        w = 1.0 / (ref - f_real).abs().mean(dim=(1, 2, 3), keepdim=True)
        out = generator_losses(f_real, f_fake, z_h, z_g, xi=0.7, anchor=anchor)
        torch.testing.assert_close(out["L_id"], (w * d * (f_real - ref)).mean())
        torch.testing.assert_close(out["L_score"], (w * d * d).mean())
        torch.testing.assert_close(out["L_cid"], out["L_id"] - 0.7 * out["L_score"])
    plain = generator_losses(f_real, f_fake, z_h, z_g, xi=0.0, weighting="none")
    torch.testing.assert_close(plain["L_cid"], (d * (f_real - z_h)).mean())
    with pytest.raises(ValueError, match="anchor"):
        generator_losses(f_real, f_fake, z_h, z_g, xi=1.0, anchor="target")


def test_gaussian_denoiser_is_the_spectral_models_exact_denoiser():
    model = GaussianSpectral.from_pretrained(model_path("gaussian-spectral"))
    den = GaussianDenoiser(torch.from_numpy(model.power(16, 16)), ABAR)
    z_t = np.random.default_rng(3).normal(size=(3, 16, 16)).astype(np.float32) * 2
    for t in (10, 400, 990):
        got = den(torch.from_numpy(z_t)[None], torch.tensor([t]))[0].detach().numpy()
        np.testing.assert_allclose(got, model.x0_prediction(z_t, t), rtol=2e-4, atol=1e-5)


def test_steepened_spectrum_is_twice_as_steep_and_pivots_low():
    model = GaussianSpectral.from_pretrained(model_path("gaussian-spectral"))
    p, q = model.power(16, 16), steepened_power(model, 16, factor=2.0)
    idx, _ = radial_bins(16, 6)
    lp, lq = np.log(radial_power(p, idx)), np.log(radial_power(q, idx))
    assert q[0, 0, 0] == p[0, 0, 0] and q[0, 0, 1] == pytest.approx(p[0, 0, 1])
    assert (q[:, 1:, 1:] < p[:, 1:, 1:]).all()
    ratio = (lq[:, -1] - lq[:, 0]) / (lp[:, -1] - lp[:, 0])
    np.testing.assert_allclose(ratio, 2.0, rtol=0.15)  # bin means of a power law


def test_fake_score_minimiser_is_the_wiener_filter_of_the_output_moments():
    """The closed form the exact check relies on: over the Wiener family, the denoising
    loss on a linear student's outputs is minimal at P_psi = E[z_g^2], whatever the
    data's distribution (Laplacian here). Every sample meets every timestep with the
    noise +1 and -1, so the sampled loss is its expectation over the noise exactly."""
    g = torch.Generator().manual_seed(4)
    scale = torch.tensor([3.0, 0.5, 1.0, 0.3]).view(1, 1, 2, 2)
    data = torch.distributions.Laplace(0.0, 1.0).sample((512, 1, 2, 2)) * scale
    student = LinearStudent((1, 2, 2))
    with torch.no_grad():
        student.log_gain.copy_(torch.tensor([0.3, -0.2, 0.0, 0.5]).view(1, 2, 2))
        z_g = student(data)
    q = (z_g.double() ** 2).mean(0).float()
    ts = torch.tensor([20, 150, 400, 700, 970])
    t = ts.repeat_interleave(2 * len(z_g))
    x = z_g.repeat(2 * len(ts), 1, 1, 1)
    sign = torch.tensor([1.0, -1.0]).repeat_interleave(len(z_g)).repeat(len(ts))
    z_t = add_noise(x, sign.view(-1, 1, 1, 1).expand_as(x), ABAR, t)
    a, s = signal_noise(ABAR, t)

    def loss(log_p):
        with torch.no_grad():
            return float(fake_score_loss(GaussianDenoiser(log_p.exp(), ABAR)(z_t, t), x, a, s))

    best = loss(q.log())
    for k in range(4):
        for step in (-0.05, 0.05):
            off = q.log().clone()
            off.view(-1)[k] += step
            assert loss(off) > best
