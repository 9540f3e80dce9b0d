"""DDPM maths shared by every backbone: noise schedules and the Gaussian closed forms.

Notation (Ho et al., 2020): ``abar[t]`` is alphas_cumprod at integer timestep ``t``
(0..T-1), and the forward marginal is

    q(x_t | x_0) = N(a_t x_0, s_t^2 I),   a_t = sqrt(abar_t),  s_t = sqrt(1 - abar_t).

For any pair i > j the forward process restricted to (x_j, x_i) is
x_i = sqrt(alpha_ij) x_j + sqrt(1 - alpha_ij) e with alpha_ij = abar_i / abar_j, so the
posterior used by DiffC (its Algorithm 1 line 3, with skipped steps) is

    q(x_j | x_i, x_0) = N(A_ij x_0 + B_ij x_i, v_ij)
    A_ij = a_j (1 - alpha_ij) / (1 - abar_i)
    B_ij = sqrt(alpha_ij) (1 - abar_j) / (1 - abar_i)
    v_ij = (1 - abar_j) (1 - alpha_ij) / (1 - abar_i)

and a denoiser's prediction x0_hat turns it into the model's reverse step
p(x_j | x_i) = N(A_ij x0_hat + B_ij x_i, v_ij) (DDPM with the posterior variance).
"""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


def make_alphas_cumprod(kind: str = "scaled_linear", num_steps: int = NUM_TRAIN_TIMESTEPS,
                        beta_start: float = 0.00085, beta_end: float = 0.012) -> np.ndarray:
    """alphas_cumprod for the beta schedules diffusers names ``linear``, ``scaled_linear``
    (Stable Diffusion: betas linear in sqrt) and ``squaredcos_cap_v2`` (cosine)."""
    if kind == "linear":
        betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    elif kind == "scaled_linear":
        betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps, dtype=np.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        def f(t):
            return np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
        t = np.arange(num_steps, dtype=np.float64)
        betas = np.minimum(1 - f((t + 1) / num_steps) / f(t / num_steps), 0.999)
    else:
        raise ValueError(f"unknown beta schedule {kind!r}")
    return np.cumprod(1.0 - betas)


@dataclasses.dataclass(frozen=True)
class Posterior:
    """Coefficients of q(x_j | x_i, x_0) = N(A x_0 + B x_i, var) for i > j."""

    A: float
    B: float
    var: float


def posterior(abar: np.ndarray, i: int, j: int) -> Posterior:
    if not i > j >= 0:
        raise ValueError(f"posterior needs i > j >= 0, got i={i}, j={j}")
    ai, aj = float(abar[i]), float(abar[j])
    alpha = ai / aj
    A = np.sqrt(aj) * (1 - alpha) / (1 - ai)
    B = np.sqrt(alpha) * (1 - aj) / (1 - ai)
    var = (1 - aj) * (1 - alpha) / (1 - ai)
    return Posterior(float(A), float(B), float(var))


def signal_noise(abar: np.ndarray, t: int) -> tuple[float, float]:
    """(a_t, s_t) of q(x_t | x_0) = N(a_t x_0, s_t^2)."""
    return float(np.sqrt(abar[t])), float(np.sqrt(1 - abar[t]))


def x0_from_eps(abar: np.ndarray, t: int, x_t: np.ndarray, eps: np.ndarray) -> np.ndarray:
    a, s = signal_noise(abar, t)
    return (x_t - s * eps) / a


def eps_from_x0(abar: np.ndarray, t: int, x_t: np.ndarray, x0: np.ndarray) -> np.ndarray:
    a, s = signal_noise(abar, t)
    return (x_t - a * x0) / s


def eps_from_v(abar: np.ndarray, t: int, x_t, v):
    """v-prediction (Salimans & Ho, 2022) to eps: v = a eps - s x0  =>  eps = a v + s x_t."""
    a, s = signal_noise(abar, t)
    return a * v + s * x_t


def ddim_step(abar: np.ndarray, i: int, j: int | None, x_i: np.ndarray,
              eps: np.ndarray) -> np.ndarray:
    """Deterministic DDIM (eta = 0, the probability-flow ODE's first-order solver) from
    timestep i to j; j None means to x_0."""
    x0 = x0_from_eps(abar, i, x_i, eps)
    if j is None:
        return x0
    a, s = signal_noise(abar, j)
    return a * x0 + s * eps


def ddim_timesteps(t: int, num_steps: int = 50,
                   num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """The timesteps DDIM visits from ``t`` down: ``t`` itself, then the points of the
    standard ``num_steps`` grid (stride num_train // num_steps) below it, ending at 0."""
    stride = max(1, num_train // num_steps)
    grid = [k for k in range(0, num_train, stride) if k < t]
    return [t] + sorted(grid, reverse=True)
