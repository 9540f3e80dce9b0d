"""Metrics: closed forms and reference values on synthetic images; identical images
give every metric its best score."""

import math

import numpy as np
import pytest

from gencodec.eval import metrics
from gencodec.eval.metrics import METRICS, WEIGHT_FREE, MetricSuite


def _textured(h=192, w=192, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0)[..., None] * np.cos(y / 11.0)[..., None]
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_psnr_closed_form():
    a = np.full((32, 48, 3), 100, np.uint8)
    b = a + 5
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    assert metrics.psnr(a, a) == math.inf


def test_psnr_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a = _textured(64, 80, 1)
    b = _textured(64, 80, 2)
    assert metrics.psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255))


def test_psnr_y_closed_form():
    # A shift of d in every channel moves BT.601 luma by d * 219 / 255.
    a = np.full((16, 16, 3), 90, np.uint8)
    b = a + 10
    dy = 10 * 219 / 255
    assert metrics.psnr_y(a, b) == pytest.approx(10 * math.log10(255 ** 2 / dy ** 2))
    # Luma of white and black: 235 and 16 (limited range).
    assert metrics.rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)).ravel() == \
        pytest.approx([235.0, 16.0])


def test_ms_ssim_closed_form_on_uniform_images():
    # Uniform images: contrast-structure is 1 at every scale, so MS-SSIM is the
    # luminance term of the coarsest scale raised to its weight 0.1333.
    a, b = 0.4, 0.6
    x = np.full((192, 192, 3), round(a * 255), np.uint8)
    y = np.full((192, 192, 3), round(b * 255), np.uint8)
    a, b = round(a * 255) / 255, round(b * 255) / 255
    c1 = 0.01 ** 2
    lum = (2 * a * b + c1) / (a * a + b * b + c1)
    # piq works in float32: E[x^2] - E[x]^2 leaves ~1e-4 on the product of five scales.
    assert metrics.ms_ssim(x, y) == pytest.approx(lum ** 0.1333, abs=5e-4)


def test_ms_ssim_small_image_is_nan():
    x = _textured(64, 64)
    assert math.isnan(metrics.ms_ssim(x, x))


def test_identical_images_get_the_best_score():
    x = _textured()
    values = MetricSuite(list(WEIGHT_FREE))(x, x)
    best = {"psnr-rgb": math.inf, "psnr-y": math.inf, "ms-ssim": 1.0, "gmsd": 0.0,
            "haarpsi": 1.0, "fsim": 1.0, "vsi": 1.0}
    for name, value in values.items():
        assert value == pytest.approx(best[name], abs=1e-5), name


def test_distortion_moves_every_metric_the_wrong_way():
    x = _textured()
    y = np.clip(x.astype(int) + np.random.default_rng(3).normal(0, 20, x.shape), 0,
                255).astype(np.uint8)
    suite = MetricSuite(list(WEIGHT_FREE))
    same, worse = suite(x, x), suite(x, y)
    for name in WEIGHT_FREE:
        better = METRICS[name].higher_is_better
        assert (same[name] > worse[name]) == better, name


def test_unknown_metric_is_an_input_error():
    from gencodec.errors import InputError

    with pytest.raises(InputError, match="unknown metric"):
        MetricSuite(["psnr", "nonsense"])


def test_metrics_on_tiny_images_are_nan_not_errors():
    """piq refuses images below a metric's filter size; such points get NaN (as
    MS-SSIM below 161 pixels), so an evaluation with a thumbnail in it runs through."""
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (12, 9), (15, 40)]:
        a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        assert np.isnan(metrics.haarpsi(a, 255 - a)) and np.isnan(metrics.ms_ssim(a, 255 - a))
        assert np.isnan(metrics.fsim(a, 255 - a)) == (min(h, w) < 2)
        assert np.isfinite(metrics.psnr(a, 255 - a))
    a = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    assert np.isfinite(metrics.haarpsi(a, 255 - a))
