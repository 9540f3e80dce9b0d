"""DiffC's encoder and decoder (Algorithms 1 and 2 of Vonderfecht & Liu, with skipped
timesteps) and the three reconstructions.

Encoding x_0 with the profile's timesteps t_0 = T-1 > t_1 > ... : step 0 sends
x_{t_0} ~ q(x_{t_0} | x_0) using p(x_T); step k sends x_{t_k} ~ q(x_{t_k} | x_{t_{k-1}}, x_0)
using p(x_{t_k} | x_{t_{k-1}}), each with the PFR reverse-channel coder of
:mod:`gencodec.rcc` keyed by (stream seed, k). The decoder draws the same samples from
the same p and the chunk indices, so it holds exactly the x_t the encoder had, and then
denoises it: probability-flow DDIM (DiffC-F, the default), ancestral sampling with the
model's p(x_j | x_i) (DiffC-A) or the one-step prediction E[x_0 | x_t] ("x0",
the paper's DiffC-MSE).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gencodec.diffc import bitstream
from gencodec.diffc.profile import Profile, fingerprint
from gencodec.diffusion import ddpm
from gencodec.diffusion.base import Backbone
from gencodec.errors import BitstreamError, InputError


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """What one coding step cost: its timestep, D_KL(q||p) and the bits written."""

    t: int
    kl_bits: float
    n_chunks: int
    coded_bits: int
    indices: np.ndarray


@dataclasses.dataclass
class Encoded:
    payload: bytes
    steps: list[StepInfo]
    #: The last x_t sent (the decoder replays it exactly) and x_0 itself.
    x_t: np.ndarray
    x0: np.ndarray


def _rcc():
    from gencodec import rcc

    return rcc


def _full(sigma, shape) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, np.float32), shape))


class DiffC:
    """A backbone and a profile: encodes latents to payloads and back."""

    def __init__(self, backbone: Backbone, profile: Profile):
        if profile.timesteps[0] != backbone.num_timesteps - 1:
            raise InputError(f"profile starts at t={profile.timesteps[0]}, the model's "
                             f"x_T is t={backbone.num_timesteps - 1}")
        self.backbone = backbone
        self.profile = profile
        self.fingerprint = fingerprint(backbone.weights_sha256(), profile)

    # -- one step ------------------------------------------------------------------------
    def _p(self, k: int, x_prev: np.ndarray | None, shape) -> tuple[np.ndarray, np.ndarray]:
        ts = self.profile.timesteps
        if k == 0:
            mu, sigma = self.backbone.prior(shape)
        else:
            mu, sigma = self.backbone.reverse(x_prev, ts[k - 1], ts[k])
        return np.ascontiguousarray(mu, np.float32), _full(sigma, shape)

    def _q(self, k: int, x_prev: np.ndarray | None, x0: np.ndarray):
        ts, abar = self.profile.timesteps, self.backbone.alphas_cumprod
        if k == 0:
            a, s = ddpm.signal_noise(abar, ts[0])
            return (a * x0).astype(np.float32), _full(s, x0.shape)
        post = ddpm.posterior(abar, ts[k - 1], ts[k])
        mu = (post.A * x0.astype(np.float64) + post.B * x_prev).astype(np.float32)
        return mu, _full(np.sqrt(post.var), x0.shape)

    # -- encoder -------------------------------------------------------------------------
    def chunks_for(self, k: int, kl_bits: float, n_dims: int) -> int:
        """Chunks of step ``k``: the profile's fixed budget, or ``ceil(D_KL / (k_bits -
        padding))`` (:func:`gencodec.rcc.n_chunks_for`), at most one per dimension. A step
        whose D_KL exceeds ``k_bits - padding`` bits per dimension (sharp edges, text or
        noise at a low t) is then sent with a coarser sample, as the paper's fixed
        budgets are; the decoder needs nothing more, the chain goes on from the sample
        actually sent."""
        fixed = self.profile.fixed_chunks(k, n_dims)
        if fixed is not None:
            return fixed
        rcc, prof = _rcc(), self.profile
        return min(rcc.n_chunks_for(kl_bits, prof.chunk_bits, prof.padding_bits), n_dims)

    def encode_latent(self, x0: np.ndarray, num_steps: int, seed: int = 0,
                      progress=None) -> Encoded:
        """Send ``num_steps`` steps of x_0; ``progress`` (a tqdm bar) gets one update per
        step."""
        rcc, prof = _rcc(), self.profile
        if not 0 <= num_steps <= prof.num_steps:
            raise InputError(f"steps {num_steps} is outside 0..{prof.num_steps}")
        x0 = np.ascontiguousarray(x0, np.float32)
        segments, steps, x = [], [], None
        for k in range(num_steps):
            mu_p, sig_p = self._p(k, x, x0.shape)
            mu_q, sig_q = self._q(k, x, x0)
            kl = rcc.gaussian_kl_bits(mu_q, sig_q, mu_p, sig_p)
            code, x = rcc.encode_step(mu_q, sig_q, mu_p, sig_p, seed=seed, step=k,
                                      chunk_bits=prof.chunk_bits,
                                      padding_bits=prof.padding_bits,
                                      device=self.backbone.device,
                                      n_chunks=self.chunks_for(k, kl, x0.size))
            coded = bitstream.encode_indices(code.indices, prof.chunk_bits, prof.exponent)
            segments.append(bitstream.Segment(code.n_chunks, coded))
            steps.append(StepInfo(prof.timesteps[k], kl, code.n_chunks, 8 * len(coded),
                                  code.indices))
            if progress is not None:
                progress.update(1)
        payload = bitstream.write_payload(seed, segments)
        return Encoded(payload, steps, x, x0)

    # -- decoder -------------------------------------------------------------------------
    def replay(self, payload: bitstream.Payload, shape: tuple[int, ...], progress=None
               ) -> tuple[np.ndarray | None, int]:
        """The x_t the encoder reached with the segments present, and its t
        (None, T-1 when no step is complete); ``progress`` gets one update per step."""
        rcc, prof = _rcc(), self.profile
        if len(payload.segments) > prof.num_steps:
            raise BitstreamError(f"stream has {len(payload.segments)} steps, the profile "
                                 f"{prof.num_steps}")
        x, n_dims = None, int(np.prod(shape))
        for k, seg in enumerate(payload.segments):
            if not 1 <= seg.n_chunks <= n_dims:
                raise BitstreamError(f"DiffC step {k} claims {seg.n_chunks} chunks")
            fixed = prof.fixed_chunks(k, n_dims)
            if fixed is not None and seg.n_chunks != fixed:
                raise BitstreamError(f"DiffC step {k} has {seg.n_chunks} chunks, the "
                                     f"profile's fixed budget {fixed}")
            indices = bitstream.decode_indices(seg.coded, seg.n_chunks, prof.chunk_bits,
                                               prof.exponent)
            mu_p, sig_p = self._p(k, x, shape)
            x = rcc.decode_step(mu_p, sig_p, rcc.StepCode(indices, prof.chunk_bits),
                                seed=payload.seed, step=k, device=self.backbone.device)
            if progress is not None:
                progress.update(1)
        t = prof.timesteps[len(payload.segments) - 1] if payload.segments else \
            self.backbone.num_timesteps - 1
        return x, t

    def reconstruct(self, x_t: np.ndarray | None, t: int, shape: tuple[int, ...],
                    method: str | None = None, seed: int = 0) -> np.ndarray:
        """Denoise x_t to x_0. Without x_t (no step received) start from p(x_T)."""
        method = method or self.profile.recon
        bb, abar = self.backbone, self.backbone.alphas_cumprod
        rng = np.random.Generator(np.random.Philox(key=[seed, 0x6463]))
        if x_t is None:
            mu, sigma = bb.prior(shape)
            x_t = (mu + sigma * rng.standard_normal(shape)).astype(np.float32)
        if method == "x0":
            return bb.x0_prediction(x_t, t)
        ts = ddpm.ddim_timesteps(t, self.profile.ddim_steps, bb.num_timesteps)
        x = x_t
        for i, j in zip(ts, ts[1:]):
            if method == "ddim":
                x = ddpm.ddim_step(abar, i, j, x, bb.eps(x, i)).astype(np.float32)
            elif method == "ancestral":
                mu, sigma = bb.reverse(x, i, j)
                x = (mu + sigma * rng.standard_normal(shape)).astype(np.float32)
            else:
                raise InputError(f"unknown reconstruction {method!r}; use ddim, ancestral or x0")
        return bb.x0_prediction(x, ts[-1])
