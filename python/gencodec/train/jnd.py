"""Just-noticeable-distortion (JND) patch curation for rate-perception training.

Guo et al. (Sec. 4.1) keep only random 256 x 256 training patches "with a JND score
greater than 0.8", patches whose texture masks distortion, where preprocessing can
save most. The JND model they cite is Wu et al., "Enhanced just noticeable difference
model for images with pattern complexity", IEEE TIP 26(6), 2017. Per pixel, on the
luma ``Y`` (BT.601, 0..255):

* **Luminance adaptation** (Chou & Li 1995, as Wu et al. use it), with ``B`` the
  background luminance, the 5x5 weighted mean of Chou & Li (weights 1 on the border,
  2 inside, 0 at the centre, / 32)::

      LA = 17 (1 - sqrt(B / 127)) + 3     if B <= 127
      LA = 3 / 128 (B - 127) + 3          otherwise

* **Luminance contrast** from the 3x3 Prewitt gradients ``Gh``, ``Gv`` (weights 1/3):
  ``Cl = sqrt((Gh^2 + Gv^2) / 2)``.
* **Pattern complexity** ``Cp``: the number of distinct orientations in the
  ``(2 R + 1)^2`` neighbourhood, orientation ``atan2(Gv, Gh) mod 180 deg`` quantised
  into :attr:`JndParams.orientation_bins` bins centred on 0, 15, 30... degrees;
  pixels with ``Cl`` below :attr:`JndParams.min_contrast` have no orientation (flat)
  and do not count.
* **Visual masking**, contrast masking times pattern masking; the constants are
  those of the public reimplementation of Wu et al. in JND-LIC (NUIST-Videocoding,
  ``Util/jnd.py``), which fixes ``Cp`` at 7 where this module computes it per pixel::

      VM = 1.84 Cl^2.4 / (Cl^2 + 26^2)  *  0.3 Cp^2.7 / (Cp^2 + 1)

* **JND** (the nonlinear additivity model): ``JND = LA + VM - 0.3 min(LA, VM)``.

**Patch score.** A patch's raw score is its mean JND (grey levels). The paper does not
say how its score is normalised to [0, 1]; here it is the patch's *rank* among the
candidate patches drawn from the same pool (``rank / (n - 1)``, ties averaged): 0 for
the least masking candidate, 1 for the most. The rule "score > 0.8" then keeps the
fifth of the candidates that masks distortion best, whatever the brightness and
content of the pool, which is what the paper's curation aims at.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

#: Chou & Li's background-luminance weights (sum 32).
BACKGROUND_KERNEL = np.array([[1, 1, 1, 1, 1],
                              [1, 2, 2, 2, 1],
                              [1, 2, 0, 2, 1],
                              [1, 2, 2, 2, 1],
                              [1, 1, 1, 1, 1]], dtype=np.float64) / 32.0
#: Prewitt gradients (weights 1/3): horizontal edges (Gh) and vertical edges (Gv).
PREWITT_H = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float64) / 3.0
PREWITT_V = PREWITT_H.T.copy()
BT601 = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass(frozen=True)
class JndParams:
    """The free choices of the model (Wu et al. give the formulas, not these)."""

    #: Orientation bins over 180 degrees (15 degrees each).
    orientation_bins: int = 12
    #: Neighbourhood radius for the pattern complexity (7 x 7 window).
    radius: int = 3
    #: Luminance contrast below which a pixel has no orientation (grey levels).
    min_contrast: float = 5.0


def luma(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB (or HxW) -> HxW float64 luma in 0..255 (BT.601 weights)."""
    a = np.asarray(image, dtype=np.float64)
    return a if a.ndim == 2 else a @ BT601


def luminance_adaptation(y: np.ndarray) -> np.ndarray:
    """LA from the Chou & Li background luminance (module docstring)."""
    b = ndimage.correlate(y, BACKGROUND_KERNEL, mode="nearest")
    return np.where(b <= 127.0, 17.0 * (1.0 - np.sqrt(np.clip(b, 0, None) / 127.0)) + 3.0,
                    3.0 / 128.0 * (b - 127.0) + 3.0)


def gradients(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prewitt ``Gh``, ``Gv`` (replicated borders)."""
    return (ndimage.correlate(y, PREWITT_H, mode="nearest"),
            ndimage.correlate(y, PREWITT_V, mode="nearest"))


def luminance_contrast(gh: np.ndarray, gv: np.ndarray) -> np.ndarray:
    return np.sqrt((gh ** 2 + gv ** 2) / 2.0)


def pattern_complexity(gh: np.ndarray, gv: np.ndarray, params: JndParams = JndParams()
                       ) -> np.ndarray:
    """Number of distinct orientation bins among the oriented pixels of each pixel's
    ``(2R+1)^2`` neighbourhood (0 in flat regions)."""
    k = params.orientation_bins
    theta = np.mod(np.arctan2(gv, gh), np.pi)
    bins = np.floor(theta / (np.pi / k) + 0.5).astype(np.int64) % k  # centred on 0 deg
    oriented = luminance_contrast(gh, gv) >= params.min_contrast
    size = 2 * params.radius + 1
    cp = np.zeros(gh.shape, dtype=np.float64)
    for b in range(k):
        present = ndimage.maximum_filter((oriented & (bins == b)).astype(np.uint8), size=size,
                                         mode="nearest")
        cp += present
    return cp


def contrast_masking(cl: np.ndarray) -> np.ndarray:
    """``1.84 Cl^2.4 / (Cl^2 + 26^2)`` (Wu et al.; 1.84 = 0.115 x 16)."""
    return 1.84 * cl ** 2.4 / (cl ** 2 + 26.0 ** 2)


def pattern_masking(cp: np.ndarray) -> np.ndarray:
    """``0.3 Cp^2.7 / (Cp^2 + 1)`` (Wu et al.)."""
    return 0.3 * cp ** 2.7 / (cp ** 2 + 1.0)


def jnd_map(image: np.ndarray, params: JndParams = JndParams()) -> np.ndarray:
    """Per-pixel JND threshold (grey levels): ``LA + VM - 0.3 min(LA, VM)``."""
    y = luma(image)
    la = luminance_adaptation(y)
    gh, gv = gradients(y)
    vm = contrast_masking(luminance_contrast(gh, gv)) * pattern_masking(
        pattern_complexity(gh, gv, params))
    return la + vm - 0.3 * np.minimum(la, vm)


def patch_means(values: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over the ``size x size`` patches whose top-left corners are
    the rows of ``corners`` (``(y, x)``), by an integral image."""
    s = np.pad(np.cumsum(np.cumsum(values, 0), 1), ((1, 0), (1, 0)))
    y, x = corners[:, 0], corners[:, 1]
    total = s[y + size, x + size] - s[y, x + size] - s[y + size, x] + s[y, x]
    return total / float(size * size)


def normalised_scores(raw: np.ndarray) -> np.ndarray:
    """Rank of each raw score among all, scaled to [0, 1] (ties averaged)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size == 1:
        return np.ones(1)
    return (rankdata(raw) - 1.0) / (raw.size - 1.0)


@dataclasses.dataclass(frozen=True)
class Patch:
    """A curated patch: the image it comes from, its top-left corner, its scores."""

    image: int
    y: int
    x: int
    raw: float
    score: float


def select_patches(images: list[np.ndarray], *, size: int = 256, candidates_per_image: int = 64,
                   threshold: float = 0.8, seed: int = 0,
                   params: JndParams = JndParams()) -> list[Patch]:
    """The paper's curation: draw ``candidates_per_image`` random ``size x size``
    patches from each image (seeded), score them (mean JND, then rank-normalised over
    the whole pool) and keep those whose score exceeds ``threshold``. Images smaller
    than ``size`` on a side give no candidates."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"JND threshold must be in [0, 1), got {threshold}")
    rng = np.random.default_rng(seed)
    found = []
    for index, image in enumerate(images):
        h, w = image.shape[:2]
        if h < size or w < size:
            continue
        corners = np.stack([rng.integers(0, h - size + 1, candidates_per_image),
                            rng.integers(0, w - size + 1, candidates_per_image)], axis=1)
        raw = patch_means(jnd_map(image, params), corners, size)
        found += [(index, int(cy), int(cx), float(r)) for (cy, cx), r in zip(corners, raw)]
    if not found:
        return []
    scores = normalised_scores(np.array([f[3] for f in found]))
    return [Patch(i, y, x, r, float(s)) for (i, y, x, r), s in zip(found, scores)
            if s > threshold]
