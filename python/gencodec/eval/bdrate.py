"""Bjontegaard delta rate between two rate-quality curves, and tables of them.

BD-rate (Bjontegaard, VCEG-M33; piecewise cubic interpolation as in VCEG-AL22 /
JVET-K0491) is the average difference of log rate between a *test* curve and its
*anchor* over the quality interval both cover, in percent: negative = the test needs
fewer bits for the same quality (the sign convention of the preprocessing paper's
Table 1). The maths is the ``bjontegaard`` package's (Akima or PCHIP interpolation).

That package expects quality to rise with rate. For metrics where lower is better
(GMSD, LPIPS, DISTS) the quality axis is negated first, which leaves the rate axis, and
so the sign of the result, as it is.

A BD-rate that cannot be computed honestly is returned as ``None`` with a note instead
of raising: fewer than :data:`MIN_POINTS` finite points, a curve whose quality does not
rise strictly with rate, or curves with no quality overlap.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

#: Points a curve needs: four, as in the original Bjontegaard method.
MIN_POINTS = 4
METHODS = ("akima", "pchip")


@dataclasses.dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent (``None`` when it cannot be computed) and a note."""

    value: float | None
    note: str = ""

    def as_dict(self) -> dict:
        return {"bd_rate": self.value, "note": self.note}


def _curve(rate, quality, higher_is_better: bool, what: str):
    """Finite points sorted by rate, quality oriented to rise with rate; or a note."""
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    if len(r) < MIN_POINTS:
        return None, (f"too few points: {what} has {len(r)} finite point(s), "
                      f"BD-rate needs {MIN_POINTS}")
    order = np.argsort(r)
    r, q = r[order], q[order] if higher_is_better else -q[order]
    if np.any(np.diff(r) <= 0) or np.any(np.diff(q) <= 0):
        return None, f"non-monotonic curve: {what}'s quality does not rise strictly with rate"
    return (r, q), ""


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, *,
            higher_is_better: bool = True, method: str = "akima") -> BDRate:
    """BD-rate (%) of the test curve against the anchor (negative = fewer bits)."""
    import bjontegaard

    if method not in METHODS:
        raise ValueError(f"BD-rate method must be one of {METHODS}, got {method!r}")
    anchor, note = _curve(anchor_rate, anchor_quality, higher_is_better, "anchor")
    if anchor is None:
        return BDRate(None, note)
    test, note = _curve(test_rate, test_quality, higher_is_better, "test")
    if test is None:
        return BDRate(None, note)
    (ra, qa), (rt, qt) = anchor, test
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if hi <= lo:
        return BDRate(None, "curves do not overlap in quality")
    overlap = (hi - lo) / (max(qa[-1], qt[-1]) - min(qa[0], qt[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is reported below, in the note
        value = float(bjontegaard.bd_rate(ra, qa, rt, qt, method=method,
                                          require_matching_points=False, min_overlap=0))
    if not math.isfinite(value):
        return BDRate(None, "interpolation failed")
    note = f"quality overlap only {overlap:.0%}" if overlap < 0.5 else ""
    return BDRate(value, note)
