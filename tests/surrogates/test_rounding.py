"""Fourier-series rounding (the preprocessing paper's Eq. 5, corrected)."""

from __future__ import annotations

import math

import pytest
import torch

from gencodec.codecs_ext.surrogates.rounding import DEFAULT_TERMS, fourier_round

X = torch.linspace(-2.0, 2.0, 20001, dtype=torch.float64)


def _max_error(terms: int, within: float) -> float:
    """Largest |round_N(x) - round(x)| over x within ``within`` of an integer."""
    near = (X - torch.round(X)).abs() <= within
    return float((fourier_round(X, terms) - torch.round(X))[near].abs().max())


def test_tends_to_rounding_away_from_half_integers():
    errors = [_max_error(n, 0.4) for n in (5, 10, 20, 50, 100, 200)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    for n, e in zip((5, 10, 20, 50, 100, 200), errors):
        assert e < 0.6 / n, (n, e)  # the partial sums converge like 1/N at a fixed distance
    # closer to the integers it converges faster
    assert _max_error(100, 0.25) < 0.5 * _max_error(100, 0.4)


def test_default_terms_error_as_documented():
    assert _max_error(DEFAULT_TERMS, 0.3) < 0.025
    assert _max_error(DEFAULT_TERMS, 0.4) < 0.05


def test_not_the_printed_series():
    """Eq. 5 as printed (1 / (2 pi) instead of 1 / (n pi) per term) stays half-way
    between x and round(x); the implemented series reaches round(x)."""
    x = torch.tensor([0.25, 1.2, -2.3], dtype=torch.float64)
    n = torch.arange(1, 2001, dtype=torch.float64)
    terms = (-1) ** (n + 1) / n * torch.sin(2 * math.pi * n * x[:, None])
    printed = x - terms.sum(-1) / (2 * math.pi)
    assert (printed - torch.round(x)).abs().min() > 0.1
    assert torch.allclose(fourier_round(x, 2000), torch.round(x), atol=1e-3)


def test_exact_at_integers_and_half_integers_symmetric_periodic():
    k = torch.arange(-5, 6, dtype=torch.float64)
    assert torch.allclose(fourier_round(k, 7), k, atol=1e-12)
    assert torch.allclose(fourier_round(k + 0.5, 7), k + 0.5, atol=1e-12)
    x = torch.rand(1000, dtype=torch.float64) * 6 - 3
    assert torch.allclose(fourier_round(-x, 9), -fourier_round(x, 9), atol=1e-12)
    assert torch.allclose(fourier_round(x + 1, 9), fourier_round(x, 9) + 1, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("terms", [1, DEFAULT_TERMS, 64])
def test_gradients_finite_and_bounded_everywhere(dtype, terms):
    # integers, half-integers (the jumps of round), large values, a dense sweep
    x = torch.cat([torch.arange(-3, 4, dtype=dtype), torch.arange(-3, 4, dtype=dtype) + 0.5,
                   torch.tensor([1e3, -1e3 + 0.5, 255.49], dtype=dtype),
                   torch.linspace(-2, 2, 4001, dtype=dtype)]).requires_grad_()
    fourier_round(x, terms).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert float(x.grad.abs().max()) <= (1 + 2 * terms) * (1 + 1e-4)
    # the derivative averages to 1 over a period (round has slope 0 but jumps by 1)
    period = torch.linspace(0, 1, 20001, dtype=torch.float64)[:-1].requires_grad_()
    fourier_round(period, terms).sum().backward()
    assert abs(float(period.grad.mean()) - 1.0) < 1e-6


def test_zero_terms_is_identity_and_negative_refused():
    x = torch.randn(10)
    assert torch.equal(fourier_round(x, 0), x)
    with pytest.raises(ValueError, match="terms"):
        fourier_round(x, -1)
