"""Consistent Score identity Distillation (CiD) losses, in x0-prediction form.

Guo et al. (generative preprocessing, section "Distillation") distil a multi-step
diffusion model into a one-step image-to-image student ``G_theta`` with CiD (GenDR,
arXiv 2503.06790), which builds on Score identity Distillation (SiD, Zhou et al.,
ICML 2024). Three networks take part; all are *denoisers* here, ``f(z_t, t) ~ E[z_0 |
z_t]`` (SiD's notation; a UNet's epsilon or v output is turned into this by
:func:`x0_from_prediction`):

* ``f_phi``: the frozen teacher (the "real score" network);
* ``f_psi``: the "fake score" network, trained by denoising on the student's outputs;
* ``G_theta``: the student, ``z_g = G_theta(z_h)``, where ``z_h`` is the latent of the
  input image (the high-fidelity anchor).

With ``z_t = a_t z_g + s_t eps`` (``a_t = sqrt(abar_t)``, ``s_t = sqrt(1 - abar_t)``) and
``d = f_phi(z_t) - f_psi(z_t)``, the student minimises (Eqs. 2 and 3)::

    L_id    = E[w(t) <d, f_phi(z_t) - z_h>]           (Eq. 2; z_h: the anchor)
    L_score = E[w(t) ||d||^2]                          (SiD's L_1, the score difference)
    L_cid   = L_id - xi * L_score                      (Eq. 3)

Gradients reach ``theta`` through ``z_t`` (both networks are differentiated with
respect to their input, never their parameters). With ``anchor="student"`` the anchor
is ``z_g`` itself and ``L_cid`` is SiD's generator loss ``L_2 - alpha L_1``
(``alpha = xi``); the paper's CiD is ``anchor="input"``.

The choices the paper leaves open, and where ours come from (all are options of
``gencodec train distill``):

* ``w(t)``: SiD's per-sample normalisation ``1 / mean|anchor - f_phi(z_t)|`` (no
  gradient), as in SiD and SiD-LSG's training loop (mingyuanzhou/SiD-LSG,
  ``training/sid_training_loop.py``, there with ``anchor = x_g``); ``"none"`` gives 1.
* the t range: ``t ~ U{t_min, ..., t_max - 1}`` with SiD-LSG's 20 and 980.
* ``xi``: SiD-LSG's default ``alpha = 1`` for Stable Diffusion (SiD used 1.2 on EDM).
* the fake-score loss (:func:`fake_score_loss`): Stable Diffusion's own training loss,
  epsilon MSE, which equals ``snr(t) ||f_psi(z_t) - z_g||^2`` in x0 form; SiD-LSG's
  v-prediction loss weighted by ``snr / (snr + 1)`` is the same quantity.

Losses are means over elements (Adam makes the overall scale irrelevant; SiD sums over
elements, which only rescales the gradient).

**Stability (measured on the exact teacher, ``scripts/cid_exact_teacher.py``).** For a
linear student ``z_g = g z_h`` of one coefficient with input second moment ``Q``,
teacher variance ``P``, a fake network that has converged (variance ``g^2 Q``) and
Wiener gains ``h_X = a X / (a^2 X + s^2)``, the gradient of ``L_id`` is

    anchor "input":    a Q (h_P - h_{g^2 Q}) (2 a g h_P - 1)
    anchor "student":  2 a g Q (h_P - h_{g^2 Q}) (a h_P - 1)

per timestep. With SiD's anchor the bracket is negative (``a h_P < 1``), so the student
always moves toward ``g^2 Q = P``; with the input anchor the sign flips wherever
``a g h_P > 1/2`` (the coefficient survives low noise levels), so a student with too
much power there gains more. On the exact teacher the paper's anchor diverged
(non-finite losses after ~300 steps) for every variant tried (xi 0 and 1, w(t) none,
t_min 500), while SiD's anchor converged; ``-xi L_score`` pushes ``|g|`` up for any
anchor.
"""

from __future__ import annotations

import torch

from gencodec.train.distill_config import ANCHORS, WEIGHTINGS

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def signal_noise(abar: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a_t, s_t)`` of ``q(z_t | z_0) = N(a_t z_0, s_t^2)``, shaped N x 1 x 1 x 1."""
    ab = abar.to(torch.float64)[t].view(-1, 1, 1, 1)
    return ab.sqrt().float(), (1.0 - ab).sqrt().float()


def add_noise(z0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """The DDPM forward marginal ``z_t = a_t z_0 + s_t eps``."""
    a, s = signal_noise(abar, t)
    return a * z0 + s * noise


def x0_from_prediction(out: torch.Tensor, z_t: torch.Tensor, a: torch.Tensor,
                       s: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """A UNet's output as the denoised ``z_0`` (Eq. 1 of the preprocessing paper)."""
    if prediction_type == "epsilon":
        return (z_t - s * out) / a
    if prediction_type == "v_prediction":
        return a * z_t - s * out
    if prediction_type == "sample":
        return out
    raise ValueError(f"prediction_type {prediction_type!r}: use one of {PREDICTION_TYPES}")


def sample_timesteps(n: int, t_min: int, t_max: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` integer timesteps uniform on ``t_min .. t_max - 1`` (SiD-LSG's range)."""
    return torch.randint(t_min, t_max, (n,), generator=generator)


def sid_weight(anchor: torch.Tensor, f_real: torch.Tensor) -> torch.Tensor:
    """SiD's ``w(t) = 1 / mean|anchor - f_phi(z_t)|`` per sample (no gradient)."""
    with torch.no_grad():
        dims = tuple(range(1, anchor.ndim))
        return 1.0 / (anchor - f_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-5)


def generator_losses(f_real: torch.Tensor, f_fake: torch.Tensor, z_h: torch.Tensor,
                     z_g: torch.Tensor, *, xi: float, anchor: str = "input",
                     weighting: str = "sid") -> dict[str, torch.Tensor]:
    """``L_id``, ``L_score`` and ``L_cid = L_id - xi L_score`` (Eqs. 2, 3).

    ``f_real``, ``f_fake``: the teacher's and the fake network's denoised estimates at
    the same ``z_t`` (computed from the student's output with gradients); ``z_h`` the
    input latent; ``z_g`` the student's output (the anchor when ``anchor="student"``)."""
    if anchor not in ANCHORS:
        raise ValueError(f"anchor {anchor!r}: use one of {ANCHORS}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r}: use one of {WEIGHTINGS}")
    ref = z_h if anchor == "input" else z_g
    f_real, f_fake = f_real.float(), f_fake.float()
    w = sid_weight(ref.float(), f_real) if weighting == "sid" else 1.0
    d = f_real - f_fake
    l_id = (w * d * (f_real - ref.float())).mean()
    l_score = (w * d * d).mean()
    return {"L_id": l_id, "L_score": l_score, "L_cid": l_id - xi * l_score}


def fake_score_loss(f_fake: torch.Tensor, z_g: torch.Tensor, a: torch.Tensor,
                    s: torch.Tensor) -> torch.Tensor:
    """Denoising loss of the fake score network on detached student samples:
    ``snr(t) ||f_psi(z_t) - z_g||^2`` = Stable Diffusion's epsilon MSE."""
    snr = (a / s) ** 2
    return (snr * (f_fake.float() - z_g.float()) ** 2).mean()
