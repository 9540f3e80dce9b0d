"""Image quality metrics on HxWx3 uint8 RGB arrays."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, distorted: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all channels: 10 log10(peak^2 / MSE).
    Identical images give +inf."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(distorted, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
