"""Intervals: how sure a score, or a difference of scores, is.

Two sources of noise, two intervals:

- **Held-out images** (`bootstrap`): a score on 1,000 validation images is one draw of the images
  a test set could hold. The paired bootstrap resamples the images (with replacement) and scores
  both runs on the same resample, so what the runs share (hard images) cancels in the difference.
  `scipy.stats.bootstrap` draws the resamples and builds the interval (BCa up to `BCA_LIMIT`
  images, percentile above: BCa's jackknife scores the set once per image, and its correction
  vanishes as the set grows). The statistic is handed multinomial *counts* (B, N), the weights
  of each image in each resample, so a metric can score every resample at once
  (`comp.tasks.resample`).
- **Seeds** (`t_interval`, `paired_t`): runs of one recipe that differ only in the seed (init,
  data order, augmentation) spread too; the t-interval of their mean says how far the recipe's
  mean could be, the paired one (seed s of row A against seed s of row B) how sure a difference is.

Every interval is two-sided at `level` (default 95%).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

BCA_LIMIT = 5000  # images: above it the percentile interval (BCa's jackknife costs one score per image)
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided interval (NaN bounds: not enough to tell, e.g. one seed)."""

    value: float
    low: float
    high: float

    def excludes(self, x: float = 0.0) -> bool:
        """Whether `x` lies outside the interval (False when the bounds are unknown)."""
        return (self.low > x) or (self.high < x)

    def text(self, digits: int = 4) -> str:
        """`0.8812 [0.8790, 0.8835]` (the value alone when the bounds are unknown)."""
        v = f"{self.value:.{digits}f}"
        if math.isnan(self.low) or math.isnan(self.high):
            return v
        return f"{v} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def signed(self, digits: int = 4, scale: float = 1.0) -> str:
        """A difference: `+0.0041 [+0.0012, +0.0069]`, values times `scale` (100: points)."""
        v, lo, hi = self.value * scale, self.low * scale, self.high * scale
        if math.isnan(lo) or math.isnan(hi):
            return f"{v:+.{digits}f}"
        return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[Interval, float]:
    """The mean of `values` (n,) with its Student-t interval, and their standard deviation (ddof 1);
    one value has no interval (NaN bounds) and a spread of NaN."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan), math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return Interval(mean, mean - half, mean + half), sd


def paired_t(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of `b - a` over pairs (seed s of A with seed s of B) with its t-interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values of unequal length: {len(a)} and {len(b)}")
    return t_interval(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64), level)[0]


@dataclass(frozen=True)
class Bootstrap:
    """A bootstrap interval: the statistic on the images as they are, its interval, the method,
    and the statistic on each resample (R,)."""

    interval: Interval
    method: str
    resampled: np.ndarray

    def share_above(self, x: float = 0.0) -> float:
        """The share of resamples whose statistic is above `x` (a tie counts half)."""
        r = self.resampled
        return float(((r > x).sum() + 0.5 * (r == x).sum()) / len(r))


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Resampled image indices (..., m) -> (B, n) counts: how often each image is in each resample."""
    idx = np.asarray(idx).reshape(-1, np.asarray(idx).shape[-1])
    out = np.zeros((len(idx), n), dtype=np.float64)
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    np.add.at(out, (rows, idx.ravel()), 1.0)
    return out


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, resamples: int = RESAMPLES, level: float = 0.95,
              seed: int = 0, method: str = "auto") -> Bootstrap:
    """The bootstrap interval of `statistic` over `n` images.

    Args:
        statistic: (B, n) image counts of B resamples -> (B,) values; all ones is the set as it is.
        method: "BCa", "percentile", or "auto" (BCa up to `BCA_LIMIT` images).

    Raises:
        ValueError: the statistic is undefined (NaN) on the set or on some resample, e.g. an AUC
            with a class that a resample leaves out; the message says how often.
    """
    from scipy.stats import bootstrap as scipy_bootstrap

    if n < 2:
        raise ValueError(f"{n} image(s): a bootstrap needs at least 2")
    observed = float(statistic(np.ones((1, n)))[0])
    if method == "auto":
        method = "BCa" if n <= BCA_LIMIT else "percentile"

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = np.asarray(idx).shape[:-1]
        return np.asarray(statistic(counts(idx, n)), dtype=np.float64).reshape(shape)

    batch = max(1, min(resamples, 2_000_000 // n))  # about 16 MB of counts at a time
    with warnings.catch_warnings():  # a degenerate distribution (every resample alike) is handled below
        warnings.simplefilter("ignore")
        res = scipy_bootstrap((np.arange(n),), stat, n_resamples=resamples, batch=batch, vectorized=True, paired=True,
                              confidence_level=level, method=method, rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    bad = int(np.isnan(dist).sum())
    if math.isnan(observed) or bad:
        raise ValueError(f"the score is undefined on {'the images themselves' if math.isnan(observed) else f'{bad} of {resamples} resamples'}")
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # BCa degenerates when every resample gives one value
        low, high = float(np.quantile(dist, (1 - level) / 2)), float(np.quantile(dist, (1 + level) / 2))
        method = "percentile"
    return Bootstrap(Interval(observed, low, high), method, dist)
