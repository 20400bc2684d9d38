"""The power of a paired comparison over seeds: what n seeds can resolve, and the seeds a difference needs.

The paired differences d_1..d_n (same seed, configuration minus baseline) are taken as independent
draws from a normal distribution with unknown spread. The 95% t-interval of their mean has the
half-width t(0.975, n-1) * s / sqrt(n): a difference smaller than that cannot be told from zero with
these seeds. The seeds a difference delta needs are the smallest n at which the two-sided paired
t-test at level alpha rejects with probability `power`, computed exactly from the non-central t
distribution with the observed standard deviation s standing in for the true one (so it is itself
uncertain: with 3 seeds the true spread's 95% range is about 0.5 s to 6 s).
"""

from __future__ import annotations

import math

MAX_SEEDS = 100_000  # beyond this "seeds needed" is reported as more than MAX_SEEDS


def half_width(sd: float, n: int, level: float = 0.95) -> float:
    """Half-width of the level-t-interval of the mean of n paired differences with standard deviation sd."""
    from scipy.special import stdtrit

    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return float(stdtrit(n - 1, (1 + level) / 2) * sd / math.sqrt(n))


def power(delta: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Probability that the two-sided paired t-test at level alpha rejects with n seeds when the true
    mean difference is delta and the differences' standard deviation is sd."""
    from scipy.stats import nct, t

    if n < 2:
        return float("nan")
    if sd <= 0:
        return 1.0 if delta != 0 else alpha
    df, shift = n - 1, abs(delta) * math.sqrt(n) / sd
    critical = t.ppf(1 - alpha / 2, df)
    return float(nct.sf(critical, df, shift) + nct.cdf(-critical, df, shift))


def seeds_needed(delta: float, sd: float, target: float = 0.8, alpha: float = 0.05) -> int | None:
    """The smallest number of seeds (>= 2) at which the paired t-test detects delta with probability
    `target`; None when delta is 0, the spread is 0 (no t-test to power) or it would take more than
    MAX_SEEDS."""
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0 or sd <= 0:
        return None
    low, high = 2, 2
    while power(delta, sd, high, alpha) < target:  # power grows with n: bracket, then bisect
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while low < high:
        middle = (low + high) // 2
        if power(delta, sd, middle, alpha) >= target:
            high = middle
        else:
            low = middle + 1
    return high
