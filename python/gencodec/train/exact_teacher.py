"""CiD against an exact teacher: the Gaussian spectral diffusion model.

With a Stable Diffusion teacher nothing in distillation can be checked exactly. The
embedded Gaussian spectral model (:mod:`gencodec.diffusion.spectral`) has an exact
denoiser, so here it is the teacher, in its own fixed orthonormal transform (colour
principal axes + 2-D DCT; the "VAE" is this transform, so ``z_h`` are the DCT
coefficients of the input image). For a coefficient of prior variance ``P``, the exact
denoiser of the DDPM marginal ``z_t = a_t z_0 + s_t eps`` is the Wiener filter

    f_P(z_t, t) = a_t P / (a_t^2 P + s_t^2) z_t.

:class:`GaussianDenoiser` is this denoiser with ``log P`` (one per coefficient) as its
parameters. The teacher is one with the spectrum of the shipped model made ``factor``
times as steep in log-log (:func:`steepened_power`); the fake score network and the
student start as copies of it, and the student is ``G(z_h) = f_theta(z_h, t_init)``
(:class:`~gencodec.train.cid_networks.OneStepStudent`), exactly as with a UNet.

Closed forms that make the check exact: the student is *linear*, ``z_g = g * z_h`` with
``g = a P_theta / (a^2 P_theta + s^2)`` at ``t_init``, so its output has the second
moment ``Q_k = g_k^2 E[z_h,k^2]`` per coefficient over the training crops, and the
minimiser of the fake network's denoising loss over the Wiener family is ``P_psi = Q``
for *any* data distribution (per t, ``E[(h z_t - x)^2] = (h a - 1)^2 Q + h^2 s^2`` is
minimal at ``h = a Q / (a^2 Q + s^2)``, the Wiener gain of ``Q``, for every t at once).
So the fake score network must converge to the exact score of the student's output
distribution (Gaussian with second moments ``Q``), and the student's output power
spectrum can be compared with the teacher's.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from gencodec.diffusion.spectral import GaussianSpectral
from gencodec.train.cid_loss import signal_noise
from gencodec.train.cid_networks import OneStepStudent
from gencodec.train.distill import CiDConfig, CiDDistiller


class GaussianDenoiser(torch.nn.Module):
    """The exact denoiser of a diagonal Gaussian prior ``N(0, diag P)`` (Wiener)."""

    def __init__(self, power: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.log_power = torch.nn.Parameter(torch.as_tensor(power, dtype=torch.float32).log())
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = signal_noise(self.alphas_cumprod, t)
        p = self.log_power.exp()
        return a * p / (a * a * p + s * s) * z_t

    def gain(self, t: int) -> torch.Tensor:
        """The Wiener gain per coefficient at timestep ``t`` (the one-step student's)."""
        return self.forward(torch.ones_like(self.log_power)[None],
                            torch.tensor([t]))[0].detach()


class LinearStudent(torch.nn.Module):
    """A one-step student ``G(z_h) = exp(log_gain) * z_h`` per coefficient, starting as
    the identity: the linear student of the closed forms, with the photos as its
    starting output (a student copied from this steep teacher at ``t_init`` starts as
    the teacher's Wiener filter of a clean input, which removes most of the image)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.log_gain = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, z_h: torch.Tensor) -> torch.Tensor:
        return self.log_gain.exp() * z_h

    def gain(self) -> torch.Tensor:
        return self.log_gain.exp().detach()


STUDENT_INITS = ("identity", "teacher")


def student_gain(student: torch.nn.Module) -> torch.Tensor:
    """The per-coefficient gain of a linear student (either kind)."""
    if isinstance(student, LinearStudent):
        return student.gain()
    return student.denoiser.gain(student.t_init)


def steepened_power(model: GaussianSpectral, size: int, factor: float = 2.0) -> np.ndarray:
    """The model's coefficient variances (3, size, size) made ``factor`` times as steep
    in log-log, pivoting on the lowest non-zero frequency of the crop (so the teacher
    has the photos' power there and less above it); the DC variance is kept."""
    p = model.power(size, size)
    out = p[:, :1, 1:2] * (p / p[:, :1, 1:2]) ** factor
    out[:, 0, 0] = p[:, 0, 0]
    return out


# -- photos and spectra --------------------------------------------------------------------
def to_coefficients(model: GaussianSpectral, crops: np.ndarray) -> torch.Tensor:
    """The model's transform of each crop: N x 3 x S x S float32."""
    return torch.from_numpy(np.stack([model.encode_image(c) for c in crops]))


def radial_bins(size: int, count: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(bin index per coefficient (S, S), -1 for DC; bin centre frequencies) on
    log-spaced radial frequencies of the orthonormal DCT (cycles per pixel)."""
    k = np.arange(size) / (2.0 * size)
    f = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    edges = np.geomspace(1.0 / (2 * size) * 0.999, f.max() * 1.001, count + 1)
    idx = np.digitize(f, edges) - 1
    idx[0, 0] = -1
    return idx, np.sqrt(edges[:-1] * edges[1:])


def radial_power(power: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean of per-coefficient power (C x S x S) within each radial bin: C x bins."""
    bins = idx.max() + 1
    return np.stack([[power[c][idx == b].mean() for b in range(bins)]
                     for c in range(power.shape[0])])


def second_moment(coeffs: torch.Tensor) -> np.ndarray:
    """E[z^2] per coefficient over a batch: C x S x S."""
    return (coeffs.double() ** 2).mean(0).numpy()


def psnr_coefficients(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images given by their orthonormal coefficients (pixels in
    [-1, 1], peak-to-peak 2): the transform keeps the squared error."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(4.0 / mse)


# -- the experiment ---------------------------------------------------------------------------
@dataclasses.dataclass
class ExactResult:
    """What :func:`run_exact_distillation` measures (radial spectra: channel x bin)."""

    freqs: np.ndarray
    teacher: np.ndarray
    photos: np.ndarray
    before: np.ndarray
    after: np.ndarray
    log_distance_before: float   # mean |ln(student / teacher)| over bins, held-out crops
    log_distance_after: float
    psnr_before: float           # student output vs input, held-out crops
    psnr_after: float
    fake_error_trained: float    # median |ln(P_psi / Q)| per coefficient, after training
    fake_error_settled: float    # the same after fake-only steps on the final student
    fake_error_teacher: float    # median |ln(P_teacher / Q)|: what "no match" looks like
    fake_error_visible: float    # settled, over the coefficients with Q snr(t_min) >= 1
    visible_fraction: float      # the share of coefficients that are
    diverged_at: int | None      # first step with a non-finite loss (training stops there)
    history: list[dict]


def log_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.log(a) - np.log(b))))


def run_exact_distillation(model: GaussianSpectral, train: torch.Tensor, held_out: torch.Tensor,
                           config: CiDConfig, steps: int, *, factor: float = 2.0,
                           student_init: str = "identity", settle_steps: int = 0, bins: int = 12,
                           progress: bool = False) -> ExactResult:
    """Distil the steepened Gaussian teacher into a one-step student on ``train``
    coefficients (N x 3 x S x S) and measure it on ``held_out`` ones.

    ``student_init``: ``"identity"`` (:class:`LinearStudent`) or ``"teacher"`` (a copy
    of the teacher at ``config.t_init``, as with a UNet). ``settle_steps`` fake-only
    updates on the final student precede the second fake-score check."""
    if student_init not in STUDENT_INITS:
        raise ValueError(f"student_init {student_init!r}: use one of {STUDENT_INITS}")
    from tqdm import tqdm

    size = train.shape[-1]
    abar = torch.from_numpy(model.alphas_cumprod)
    p_teacher = steepened_power(model, size, factor)
    teacher = GaussianDenoiser(torch.from_numpy(p_teacher), abar)
    fake = copy.deepcopy(teacher)
    student = (LinearStudent(tuple(train.shape[1:])) if student_init == "identity"
               else OneStepStudent(copy.deepcopy(teacher), config.t_init))
    trainer = CiDDistiller(teacher, fake, student, config, alphas_cumprod=abar)
    idx, freqs = radial_bins(size, bins)

    def spectrum_of(x):
        return radial_power(second_moment(x), idx)

    def held_out_output():
        with torch.no_grad():
            return trainer.student(held_out)

    before = held_out_output()
    history, diverged_at = [], None
    gen = torch.Generator().manual_seed(config.seed)
    for step in tqdm(range(steps), desc="CiD (exact teacher)", disable=not progress):
        batch = train[torch.randint(0, len(train), (config.global_batch,), generator=gen)]
        logs = trainer.train_step(batch)
        if step % max(1, steps // 50) == 0 or step == steps - 1:
            history.append({"step": step, **logs})
        if not all(np.isfinite(v) for v in logs.values()):
            history.append({"step": step, **logs})
            diverged_at, settle_steps = step, 0
            break
    after = held_out_output()

    def output_moment() -> np.ndarray:
        return second_moment(train) * student_gain(student).double().numpy() ** 2

    def fake_error(where=None) -> float:
        err = np.abs(fake.log_power.detach().double().numpy() - np.log(output_moment()))
        return float(np.median(err if where is None else err[where]))

    trained_err = fake_error()
    q = output_moment()
    teacher_err = float(np.median(np.abs(np.log(p_teacher) - np.log(q))))
    for _ in range(settle_steps):
        trainer.step += 1
        trainer.fake_step(train[torch.randint(0, len(train), (config.global_batch,), generator=gen)])
    # Below the smallest noise level the data are invisible to denoising: a coefficient
    # with Q snr(t_min) << 1 leaves the fake score network's loss flat in P_psi.
    snr_min = float(abar[config.t_min] / (1.0 - abar[config.t_min]))
    visible = output_moment() * snr_min >= 1.0
    t_spec = radial_power(p_teacher, idx)
    b_spec, a_spec = spectrum_of(before), spectrum_of(after)
    return ExactResult(
        freqs=freqs, teacher=t_spec, photos=spectrum_of(held_out), before=b_spec, after=a_spec,
        log_distance_before=log_distance(b_spec, t_spec),
        log_distance_after=log_distance(a_spec, t_spec),
        psnr_before=psnr_coefficients(before, held_out),
        psnr_after=psnr_coefficients(after, held_out),
        fake_error_trained=trained_err, fake_error_settled=fake_error(),
        fake_error_teacher=teacher_err,
        fake_error_visible=fake_error(visible) if visible.any() else float("nan"),
        visible_fraction=float(visible.mean()), diverged_at=diverged_at, history=history)
