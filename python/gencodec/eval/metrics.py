"""Image quality metrics on HxWx3 uint8 RGB arrays.

Every metric compares a *reference* (the original image, before any preprocessing)
with a *distorted* image (what the decoder shows). Names are the column names of the
results (CompressAI style):

=============  ======  =======================================================
name           better  what
=============  ======  =======================================================
psnr-rgb       higher  PSNR over R, G and B (dB)
psnr-y         higher  PSNR of BT.601 luma, MATLAB ``rgb2ycbcr`` convention (dB)
ms-ssim        higher  multi-scale SSIM (Wang et al. 2003), piq
gmsd           lower   gradient magnitude similarity deviation, piq
haarpsi        higher  Haar wavelet perceptual similarity, piq
fsim           higher  feature similarity (chromatic, FSIMc), piq
vsi            higher  visual saliency-induced index, piq
lpips-alex     lower   LPIPS v0.1, AlexNet (needs local weights, :mod:`.learned`)
lpips-vgg      lower   LPIPS v0.1, VGG16 (needs local weights)
dists          lower   DISTS (needs local weights)
topiq-fr       higher  TOPIQ full-reference, KADID (needs local weights)
=============  ======  =======================================================

The weight-free metrics always run. The learned ones run only when their weights are
found on this machine (:func:`gencodec.eval.learned.resolve_weights`); otherwise
:class:`MetricSuite` reports them as ``unavailable (...)`` and never substitutes another
metric under their name.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import types

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


#: BT.601 luma on 8-bit RGB, limited range (16..235), as MATLAB's ``rgb2ycbcr``.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma (float, 16..235) of an HxWx3 uint8 RGB image."""
    return 16.0 + np.asarray(image, dtype=np.float64) @ _Y_WEIGHTS


def psnr_y(reference: np.ndarray, distorted: np.ndarray) -> float:
    """PSNR of the luma channel (:func:`rgb_to_y`), peak 255."""
    return psnr(rgb_to_y(reference), rgb_to_y(distorted))


def _piq(submodule: str) -> types.ModuleType:
    """Import ``piq.<submodule>`` even where ``import piq`` fails.

    piq 0.8's ``__init__`` imports every metric, among them ``perceptual`` (LPIPS,
    DISTS), which needs torchvision; torchvision has no CPU build for the torch pinned
    here, so piq is installed without it and ``import piq`` raises. The metrics used
    here import only ``piq.utils``, ``piq.functional`` and ``piq.ssim`` (torch alone).
    So, when the full import fails, register a bare package module ``piq`` whose
    ``__path__`` is the installed folder: Python then imports submodules from that
    folder without running ``piq/__init__.py``. Where torchvision is present the real
    package is used unchanged."""
    if "piq" not in sys.modules:
        try:
            import piq  # noqa: F401  (the whole package, where torchvision is installed)
        except ImportError:
            spec = importlib.util.find_spec("piq")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("piq is not installed (pip install --no-deps piq==0.8.0)")
            package = types.ModuleType("piq")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            sys.modules["piq"] = package
    return importlib.import_module(f"piq.{submodule}")


def to_tensor(image: np.ndarray):
    """HxWx3 uint8 -> 1x3xHxW float32 tensor in [0, 1]."""
    import torch

    a = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    return (torch.from_numpy(a).float() / 255.0).unsqueeze(0)


#: Smallest side MS-SSIM accepts: 5 scales of an 11-tap window, (11 - 1) * 2^4 + 1.
MS_SSIM_MIN_SIDE = 161


def ms_ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    """MS-SSIM (5 scales, 11x11 Gaussian window, sigma 1.5, RGB averaged), piq.
    NaN for images smaller than :data:`MS_SSIM_MIN_SIDE` on a side."""
    if min(np.shape(reference)[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    x, y = to_tensor(reference), to_tensor(distorted)
    return float(_piq("ms_ssim").multi_scale_ssim(x, y, data_range=1.0))


def _piq_metric(submodule: str, function: str, min_side: int = 1):
    def metric(reference: np.ndarray, distorted: np.ndarray) -> float:
        if min(np.shape(reference)[:2]) < min_side:  # piq would raise
            return float("nan")
        fn = getattr(_piq(submodule), function)
        return float(fn(to_tensor(reference), to_tensor(distorted), data_range=1.0))

    metric.__name__ = function
    metric.__doc__ = (f"piq.{submodule}.{function} on [0, 1] RGB tensors"
                      + (f"; NaN below {min_side} pixels on a side." if min_side > 1 else "."))
    return metric


gmsd = _piq_metric("gmsd", "gmsd")
#: HaarPSI's coarsest Haar filter (3 scales) is 2^(3+1) = 16 pixels wide; FSIM's
#: phase congruency needs two pixels a side.
haarpsi = _piq_metric("haarpsi", "haarpsi", min_side=16)
fsim = _piq_metric("fsim", "fsim", min_side=2)
vsi = _piq_metric("vsi", "vsi")


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """A metric's column name, direction and whether it needs learned weights."""

    name: str
    higher_is_better: bool
    learned: bool = False
    #: ``fn(reference, distorted) -> float`` for the weight-free metrics.
    fn: object = None


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("psnr-rgb", True, fn=psnr),
    MetricInfo("psnr-y", True, fn=psnr_y),
    MetricInfo("ms-ssim", True, fn=ms_ssim),
    MetricInfo("gmsd", False, fn=gmsd),
    MetricInfo("haarpsi", True, fn=haarpsi),
    MetricInfo("fsim", True, fn=fsim),
    MetricInfo("vsi", True, fn=vsi),
    MetricInfo("lpips-alex", False, learned=True),
    MetricInfo("lpips-vgg", False, learned=True),
    MetricInfo("dists", False, learned=True),
    MetricInfo("topiq-fr", True, learned=True),
)}

WEIGHT_FREE = tuple(n for n, m in METRICS.items() if not m.learned)
LEARNED = tuple(n for n, m in METRICS.items() if m.learned)


def unavailable(reason: str) -> str:
    """The text a results column shows for a metric that cannot run here."""
    return f"unavailable ({reason})"


class MetricSuite:
    """The metrics of a run: ``suite(reference, distorted) -> {name: value}``.

    Learned metrics whose weights are missing or unusable land in
    :attr:`unavailable` (name -> the column text, e.g. ``"unavailable (no local
    weights)"``) and are left out of the values; they are never replaced."""

    def __init__(self, names: list[str] | None = None, weights_dir: str | None = None):
        names = list(METRICS) if names is None else list(names)
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            from gencodec.errors import InputError

            raise InputError(f"unknown metric(s) {', '.join(unknown)}; known: "
                             f"{', '.join(METRICS)}")
        self.requested = names
        self.unavailable: dict[str, str] = {}
        #: name -> what exactly is missing (file names and folders searched).
        self.details: dict[str, str] = {}
        self._fns: dict[str, object] = {}
        for name in names:
            info = METRICS[name]
            if not info.learned:
                self._fns[name] = info.fn
                continue
            from gencodec.eval import learned

            fn, reason, detail = learned.load_metric(name, weights_dir)
            if fn is None:
                self.unavailable[name] = unavailable(reason)
                self.details[name] = detail
            else:
                self._fns[name] = fn

    @property
    def names(self) -> list[str]:
        """The metrics that run, in the requested order."""
        return [n for n in self.requested if n in self._fns]

    def __call__(self, reference: np.ndarray, distorted: np.ndarray) -> dict[str, float]:
        import torch

        with torch.inference_mode():
            return {name: float(fn(reference, distorted)) for name, fn in self._fns.items()}
