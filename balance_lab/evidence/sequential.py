"""A group-sequential paired t-test: look after every batch of seeds, stop once a difference is settled,
and keep the chance of a false "resolved" at alpha over all the looks together.

Looking after every batch of seeds and stopping at the first 95% interval that excludes zero makes
a false positive far likelier than 5% (about 13.5% over four looks at 3, 6, 9, 12 seeds). The rule here is the standard
remedy of clinical trials (Jennison & Turnbull, Group Sequential Methods with Applications to
Clinical Trials, 2000, ch. 7 and 11): the looks are planned before the first seed (at n_1 < n_2 <
... < n_K seeds), alpha is spent over them by the Lan-DeMets O'Brien-Fleming spending function
(Lan & DeMets, Biometrika 1983), alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) at the information
fraction t = n_k / n_K, which spends almost nothing early and keeps the last look close to a plain
5% test, and at each look the interval is the repeated confidence interval mean +- b_k s / sqrt(n_k)
(Jennison & Turnbull 1989): the K intervals cover the true difference together with probability
1 - alpha, so the interval at whichever look the sweep stops at is a valid 95% interval.

With 3 to 12 seeds a look has 2 to 11 degrees of freedom, where the usual normal-theory boundaries
converted to t (the "significance level approach") are off. The t-statistics of the K looks have a
joint null distribution that depends only on the look schedule, not on the unknown spread, so the
boundaries b_k are computed for it directly. The first is exact: every sweep is still running at
look 1, where t has n_1 - 1 degrees of freedom, so b_1 is the t quantile of alpha(t_1) / 2 (a
simulation would see only a few dozen of its rare exceedances: for looks at 3, 6, 9, 12 seeds it gave
90.95 where the exact value is 106.2; sweeps before 2026-12-06 21:00 recorded that value, and their
reports use what they recorded). The later ones come from BOUNDARY_SIMULATIONS null sweeps of standard
normal differences (fixed generator seed, so the boundaries are reproducible): b_k is the |t| that
the sweeps still running at look k exceed with unconditional probability alpha(t_k) - alpha(t_{k-1}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
BOUNDARY_SIMULATIONS = 1 << 18  # Monte-Carlo error of the spent alpha: about 0.0004
BOUNDARY_SEED = 20261206
RULE = "group-sequential paired t-test, Lan-DeMets O'Brien-Fleming alpha spending (two-sided 0.05)"


def planned_looks(first: int, step: int, max_seeds: int) -> tuple[int, ...]:
    """Seeds at each look: the first batch, then `step` more at a time, the last look at max_seeds."""
    if first < 2:
        raise ValueError(f"the first look needs at least 2 seeds, not {first}")
    if step < 1:
        raise ValueError(f"the step must be at least 1 seed, not {step}")
    if max_seeds < first:
        raise ValueError(f"max seeds {max_seeds} is below the first look's {first} seeds")
    looks = list(range(first, max_seeds + 1, step))
    if looks[-1] != max_seeds:
        looks.append(max_seeds)
    return tuple(looks)


def spent(fraction: float, alpha: float = ALPHA) -> float:
    """Lan-DeMets O'Brien-Fleming spending: the alpha used up by information fraction t in (0, 1]."""
    from scipy.special import ndtr, ndtri

    return float(2 - 2 * ndtr(ndtri(1 - alpha / 2) / math.sqrt(fraction)))


def boundaries(looks: tuple[int, ...], alpha: float = ALPHA, simulations: int = BOUNDARY_SIMULATIONS) -> list[float]:
    """|t| boundaries b_k per look for the paired t-statistics' exact joint null distribution."""
    from scipy.special import stdtrit

    rng = np.random.default_rng(BOUNDARY_SEED)
    diffs = rng.standard_normal((simulations, looks[-1]), dtype=np.float64)
    t_SK = np.stack([_t_statistics(diffs[:, :n]) for n in looks], axis=1)  # (simulations, looks)
    running = np.ones(simulations, dtype=bool)
    result, before = [], 0.0
    for k, n in enumerate(looks):
        budget = spent(n / looks[-1], alpha) - before  # alpha spent at this look alone
        before += budget
        if k == 0:  # every sweep runs at look 1: t with n_1 - 1 degrees of freedom, exactly
            bound = float(stdtrit(n - 1, 1 - budget / 2)) if budget > 0 else math.inf
        else:
            abs_t = np.sort(np.abs(t_SK[running, k]))[::-1]
            stop = int(round(budget * simulations))
            bound = float(abs_t[stop - 1]) if 0 < stop <= len(abs_t) else math.inf
        result.append(bound)
        running &= np.abs(t_SK[:, k]) < bound
    return result


def _t_statistics(diffs: np.ndarray) -> np.ndarray:
    n = diffs.shape[-1]
    sd = diffs.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return diffs.mean(axis=-1) / (sd / math.sqrt(n))


@dataclass
class Look:
    number: int  # 1-based
    seeds: int
    mean: float
    sd: float
    boundary: float  # |t| needed to stop here
    low: float  # repeated confidence interval
    high: float

    @property
    def crossed(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass
class Outcome:
    """A sequential comparison of one pair on one metric, over the looks run so far."""

    looks_planned: tuple[int, ...]
    looks: list[Look] = field(default_factory=list)

    @property
    def resolved_at(self) -> Look | None:
        """The first look whose interval excludes zero (the rule stops there; later data do not undo it)."""
        return next((look for look in self.looks if look.crossed), None)

    @property
    def final(self) -> Look | None:
        """The interval to report: the look it resolved at, else the last look run."""
        return self.resolved_at or (self.looks[-1] if self.looks else None)

    @property
    def finished(self) -> bool:
        return self.resolved_at is not None or (bool(self.looks) and self.looks[-1].seeds >= self.looks_planned[-1])

    def statement(self) -> str:
        final = self.final
        if final is None:
            return "no look yet"
        if self.resolved_at is not None:
            return f"resolved at look {final.number} ({final.seeds} seeds)"
        if final.sd == 0:
            return f"no interval: every one of the {final.seeds} seeds differs by the same {final.mean:+.4g}"
        if self.finished:
            return f"not resolved within {self.looks_planned[-1]} seeds"
        return f"open after look {final.number} of {len(self.looks_planned)} ({final.seeds} seeds)"


def analyse(diffs: list[float] | np.ndarray, looks: tuple[int, ...], bounds: list[float] | None = None) -> Outcome:
    """The looks that `diffs` (paired differences in the planned seed order) reach, each with its
    repeated confidence interval."""
    diffs = np.asarray(diffs, dtype=np.float64)
    bounds = bounds if bounds is not None else boundaries(looks)
    outcome = Outcome(tuple(looks))
    for k, n in enumerate(looks):
        if n > len(diffs):
            break
        window = diffs[:n]
        mean, sd = float(window.mean()), float(window.std(ddof=1))
        # identical differences (a discrete metric): the t model does not apply, no interval (not [m, m])
        half = bounds[k] * sd / math.sqrt(n) if sd > 0 else float("nan")
        outcome.looks.append(Look(k + 1, n, mean, sd, bounds[k], mean - half, mean + half))
    return outcome


def naive_looks_crossed(diffs: np.ndarray, looks: tuple[int, ...], alpha: float = ALPHA) -> np.ndarray:
    """For comparison only: whether a plain (1 - alpha) t-interval excluded zero at any look, per
    simulated sweep (rows of `diffs`): what re-testing after every batch of seeds does."""
    from scipy.special import stdtrit

    crossed = np.zeros(diffs.shape[0], dtype=bool)
    for n in looks:
        crossed |= np.abs(_t_statistics(diffs[:, :n])) >= stdtrit(n - 1, 1 - alpha / 2)
    return crossed


def sequential_crossed(diffs: np.ndarray, looks: tuple[int, ...], bounds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated sweep (rows of `diffs`): whether the rule resolved, and the seeds it spent."""
    crossed = np.zeros(diffs.shape[0], dtype=bool)
    spent_seeds = np.full(diffs.shape[0], looks[-1])
    for n, bound in zip(looks, bounds):
        now = ~crossed & (np.abs(_t_statistics(diffs[:, :n])) >= bound)
        spent_seeds[now] = n
        crossed |= now
    return crossed, spent_seeds
