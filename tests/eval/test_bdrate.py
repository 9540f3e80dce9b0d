"""BD-rate against synthetic curves with a known rate factor, and the notes that
replace a value when one cannot be computed."""

import numpy as np
import pytest

from gencodec.eval.bdrate import bd_rate

RATES = np.array([0.15, 0.3, 0.6, 1.2, 2.4])


def _psnr(rate):  # a smooth, concave R-D curve
    return 28 + 6 * np.log2(rate) - 0.4 * np.log2(rate) ** 2


@pytest.mark.parametrize("method", ["akima", "pchip"])
@pytest.mark.parametrize("factor", [0.8, 0.7, 1.15])
def test_shifted_curve_gives_the_rate_factor(method, factor):
    # The test curve reaches every quality with `factor` times the anchor's rate.
    result = bd_rate(RATES, _psnr(RATES), RATES * factor, _psnr(RATES), method=method)
    assert result.value == pytest.approx((factor - 1) * 100, abs=0.5)
    assert result.note == ""


def test_shift_on_other_sample_points():
    test_rates = np.array([0.2, 0.45, 0.9, 1.7, 2.2])
    result = bd_rate(RATES, _psnr(RATES), test_rates * 0.75, _psnr(test_rates))
    assert result.value == pytest.approx(-25.0, abs=0.5)


def test_lower_is_better_metric_keeps_the_sign():
    dist = lambda r: 0.3 / (1 + r)  # noqa: E731  (an LPIPS-like curve)
    result = bd_rate(RATES, dist(RATES), RATES * 0.8, dist(RATES), higher_is_better=False)
    assert result.value == pytest.approx(-20.0, abs=0.5)


def test_too_few_points_is_a_note():
    result = bd_rate(RATES[:3], _psnr(RATES[:3]), RATES, _psnr(RATES))
    assert result.value is None and "too few points" in result.note


def test_infinite_points_do_not_count():
    q = _psnr(RATES)
    q[-2:] = np.inf
    result = bd_rate(RATES, q, RATES, _psnr(RATES))
    assert result.value is None and "3 finite" in result.note


def test_non_monotonic_curve_is_a_note():
    q = _psnr(RATES)
    q[2] = q[3] + 1
    result = bd_rate(RATES, _psnr(RATES), RATES, q)
    assert result.value is None and "non-monotonic" in result.note


def test_disjoint_curves_are_a_note():
    result = bd_rate(RATES, _psnr(RATES), RATES, _psnr(RATES) + 50)
    assert result.value is None and "overlap" in result.note


def test_small_overlap_is_flagged():
    result = bd_rate(RATES, _psnr(RATES), RATES * 0.9, _psnr(RATES) + 16)
    assert result.value is not None and "overlap only" in result.note
