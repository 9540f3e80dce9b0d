"""The embedded default: a Gaussian "spectral" diffusion model over images.

The prior is a stationary Gaussian: pixels in [-1, 1] go through a fixed orthonormal
colour basis (the principal axes of photo colours) and the orthonormal 2-D DCT-II at
the image's own size, and the coefficient (c, k, l) of an H x W image is modelled as
independent N(0, P_c(f)) with radial frequency f = sqrt((k/2H)^2 + (l/2W)^2) cycles per
pixel; P_c is a power spectrum estimated from photos (``scripts/estimate_spectrum.py``)
and the DC coefficient has variance H W sigma_dc,c^2. Because the transform is
orthonormal, the DDPM forward process x_t = a_t x_0 + s_t eps acts coefficient-wise
and everything DiffC needs is exact and diagonal. For one coefficient with prior
variance P (all quantities per coefficient):

    p(x_0 | x_i)  = N(m0, v0),  v0 = 1 / (1/P + a_i^2/s_i^2),  m0 = a_i P x_i / (a_i^2 P + s_i^2)
                   (the Wiener filter; eps(x_i) = (x_i - a_i m0) / s_i is exact)
    p(x_j | x_i)  = int q(x_j | x_i, x_0) p(x_0 | x_i) dx_0
                  = N(A_ij m0 + B_ij x_i,  v_ij + A_ij^2 v0)
    p(x_T)        = N(0, a_T^2 P + s_T^2)

with A_ij, B_ij, v_ij the posterior coefficients of :mod:`gencodec.diffusion.ddpm`. So
the reverse step has the *exact* covariance, not the DDPM posterior variance v_ij that
a learned model uses, and the rate of DiffC on this model is the true negative
log-likelihood bound of the Gaussian prior. It needs no training and runs on a CPU
(two FFT-sized transforms per image); ``device="cuda"`` moves only the PFR coder to
the GPU, which picks the same indices, so the stream is the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from scipy import fft

from gencodec.diffusion import ddpm
from gencodec.diffusion.base import Backbone, Gaussian, sha256_files
from gencodec.errors import InputError

ARCHITECTURE = "gaussian-spectral"
WEIGHTS_FILE = "spectrum.safetensors"
CONFIG_FILE = "config.json"


class GaussianSpectral(Backbone):
    """Stationary Gaussian prior in a DCT basis; exact Wiener denoiser."""

    pad_multiple = 1
    min_side = 8
    max_side = 4096

    def __init__(self, tensors: dict[str, np.ndarray], config: dict, name: str = ARCHITECTURE,
                 sha256: bytes | None = None, device: str = "cpu"):
        if str(device) not in ("cpu", "cuda", "cuda:0"):
            raise InputError(f"{name}: device must be cpu or cuda (the PFR coder's; the "
                             f"model itself runs in numpy), got {device!r}")
        self.name, self.device = name, str(device)
        self.config = dict(config)
        self.freqs = np.asarray(tensors["freqs"], np.float64)
        self.log_power = np.asarray(tensors["log_power"], np.float64)
        self.colour_basis = np.asarray(tensors["colour_basis"], np.float64)
        self.colour_mean = np.asarray(tensors["colour_mean"], np.float64)
        self.dc_std = np.asarray(tensors["dc_std"], np.float64)
        self.alphas_cumprod = ddpm.make_alphas_cumprod(
            config.get("beta_schedule", "scaled_linear"),
            int(config.get("num_train_timesteps", ddpm.NUM_TRAIN_TIMESTEPS)),
            float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012)))
        self._sha = sha256
        self._power_cache: dict[tuple[int, int], np.ndarray] = {}
        # the power law below the lowest estimated frequency: slope of the first bins
        lf = np.log(self.freqs[:4])
        self._low_slope = np.array([np.polyfit(lf, lp[:4], 1)[0] for lp in self.log_power])

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, name: str | None = None,
                        device: str = "cpu") -> "GaussianSpectral":
        from safetensors.numpy import load_file

        path = Path(path)
        config = json.loads((path / CONFIG_FILE).read_text())
        if config.get("architecture") != ARCHITECTURE:
            raise ValueError(f"{path}: not a {ARCHITECTURE} model")
        tensors = load_file(str(path / WEIGHTS_FILE))
        sha = sha256_files([path / WEIGHTS_FILE, path / CONFIG_FILE])
        return cls(tensors, config, name=name or str(path), sha256=sha, device=device)

    def weights_sha256(self) -> bytes:
        if self._sha is None:  # built from tensors in memory: hash what they hold
            h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
            for a in (self.freqs, self.log_power, self.colour_basis, self.colour_mean,
                      self.dc_std):
                h.update(np.ascontiguousarray(a, np.float64).tobytes())
            self._sha = h.digest()
        return self._sha

    # -- the prior -------------------------------------------------------------------
    def power(self, height: int, width: int) -> np.ndarray:
        """Prior variance of every coefficient, shape (3, H, W) (cached per size)."""
        if (height, width) not in self._power_cache:
            if len(self._power_cache) >= 4:
                self._power_cache.clear()
            self._power_cache[(height, width)] = self._power(height, width)
        return self._power_cache[(height, width)]

    def _power(self, height: int, width: int) -> np.ndarray:
        fk = np.arange(height)[:, None] / (2.0 * height)
        fl = np.arange(width)[None, :] / (2.0 * width)
        f = np.sqrt(fk ** 2 + fl ** 2)
        f[0, 0] = self.freqs[0]  # the DC coefficient is set apart below
        logf = np.log(np.clip(f, None, self.freqs[-1]))
        out = np.empty((3, height, width))
        for c in range(3):
            lp = np.interp(logf, np.log(self.freqs), self.log_power[c])
            below = f < self.freqs[0]
            lp[below] = self.log_power[c, 0] + self._low_slope[c] * (
                np.log(f[below]) - np.log(self.freqs[0]))
            out[c] = np.exp(lp)
            out[c, 0, 0] = height * width * self.dc_std[c] ** 2
        return out

    # -- image <-> coefficients ---------------------------------------------------------
    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        return (3, height, width)

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        x = image.astype(np.float64) / 127.5 - 1.0 - self.colour_mean
        y = np.einsum("dc,hwc->dhw", self.colour_basis, x)
        return fft.dctn(y, axes=(1, 2), norm="ortho").astype(np.float32)

    def decode_latent(self, x0: np.ndarray) -> np.ndarray:
        y = fft.idctn(np.asarray(x0, np.float64), axes=(1, 2), norm="ortho")
        x = np.einsum("dc,dhw->hwc", self.colour_basis, y) + self.colour_mean
        return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)

    # -- exact Gaussian diffusion ----------------------------------------------------
    def _wiener(self, x_t: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(m0, v0) of p(x_0 | x_t)."""
        a, s = ddpm.signal_noise(self.alphas_cumprod, t)
        P = self.power(*x_t.shape[1:])
        denom = a * a * P + s * s
        return a * P / denom * x_t, P * s * s / denom

    def prior(self, x0_shape: tuple[int, ...]) -> Gaussian:
        a, s = ddpm.signal_noise(self.alphas_cumprod, self.num_timesteps - 1)
        P = self.power(*x0_shape[1:])
        return np.zeros(x0_shape, np.float32), np.sqrt(a * a * P + s * s).astype(np.float32)

    def eps(self, x_t: np.ndarray, t: int) -> np.ndarray:
        m0, _ = self._wiener(x_t, t)
        return ddpm.eps_from_x0(self.alphas_cumprod, t, x_t, m0).astype(np.float32)

    def x0_prediction(self, x_t: np.ndarray, t: int) -> np.ndarray:
        return self._wiener(x_t, t)[0].astype(np.float32)

    def reverse_predictor(self, x_i: np.ndarray, i: int):
        m0, v0 = self._wiener(x_i, i)

        def at(j: int) -> Gaussian:
            post = ddpm.posterior(self.alphas_cumprod, i, j)
            mu = post.A * m0 + post.B * x_i
            return mu.astype(np.float32), np.sqrt(post.var + post.A ** 2 * v0).astype(np.float32)

        return at

