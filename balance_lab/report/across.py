"""Does a method's gap move with the setting? The same paired comparison in two contexts (one sweep at
model=tiny and at model=small in one store, collect._contexts), set side by side.

The papers ask it of model size: loss-free minus aux is -0.6% ppl at 1B and at 3B, while the MaxVio_global
gap shrinks from 0.68 to 0.48. Here each context's gap is the paired mean over its seeds in % of its own
baseline (perplexities differ between models, so only relative gaps compare), and the change between two
contexts gets a Welch 95% t-interval: seeds of different models are independent runs, so the two sets
of paired differences are compared unpaired, each with its own spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from balance_lab.report import stats


@dataclass(frozen=True)
class Gap:
    context: str  # readable: the model preset's name, or the differing settings
    n: int
    mean: float  # paired mean over the context's seeds (configuration - baseline)
    sd: float
    base: float  # the baseline's mean over the same seeds

    @property
    def pct(self) -> float:
        return 100 * self.mean / abs(self.base) if self.base else float("nan")


@dataclass(frozen=True)
class Shift:
    comparison: str  # "configuration - baseline", labels without their context
    metric: str
    first: Gap
    other: Gap
    change: tuple[float, float, float]  # other's gap - first's: estimate, Welch 95% low, high (nan: n < 2)
    change_pct: tuple[float, float, float]  # the same in percentage points of each context's baseline

    @property
    def verdict(self) -> str:
        """'no clear change', or how the gap moved at the other context: larger / smaller where both gaps
        have the same sign, 'changes sign' where they differ, higher / lower where the first is zero."""
        estimate, low, high = self.change_pct
        if math.isnan(low):
            if min(self.first.n, self.other.n) < 2:
                return "n < 2: no interval"
            if not (self.first.base and self.other.base):
                return "no interval: a baseline mean of zero"
            return "no interval: non-finite values"
        if low <= 0 <= high:
            return "no clear change"
        at = self.other.context
        first, other = self.first.pct, self.other.pct
        if first == 0 or math.isnan(first):
            return f"{'higher' if estimate > 0 else 'lower'} at {at}"
        if first * other < 0:
            return f"changes sign at {at} ({first:+.1f}% to {other:+.1f}%)"
        return f"{'larger' if abs(other) > abs(first) else 'smaller'} at {at}"


def shifts(runs: pd.DataFrame, paired: list[stats.Paired]) -> list[Shift]:
    """Every comparison made in two or more contexts: each later context against the first."""
    if "context" not in runs or runs["context"].nunique() < 2:
        return []
    first = runs.drop_duplicates("label").set_index("label")
    by = "start_time" if "start_time" in runs else "order"  # the setting run first is the reference
    order = list(dict.fromkeys(runs.sort_values(by)["context"]))
    by_comparison: dict[tuple, dict[str, stats.Paired]] = {}
    for p in paired:
        key = (first.at[p.label, "treatment"], first.at[p.baseline, "treatment"], p.metric)
        by_comparison.setdefault(key, {})[first.at[p.label, "context"]] = p
    found = []
    for (_, _, metric), per_context in by_comparison.items():
        present = [c for c in order if c in per_context]
        reference = per_context[present[0]]
        name = first.at[reference.label, "context_name"]
        for context in present[1:]:
            other = per_context[context]
            found.append(_shift(_plain(reference, name), metric, _gap(reference, first), _gap(other, first)))
    return found


def _plain(p: stats.Paired, context_name: str) -> str:
    """'loss_free-u1e-2-sign-add-small - aux_loss-a1e-3-micro-small' without the context's part."""
    return " - ".join(label.replace(f"-{context_name}", "") for label in (p.label, p.baseline))


def _gap(p: stats.Paired, first: pd.DataFrame) -> Gap:
    return Gap(str(first.at[p.label, "context_name"]), p.n, p.mean, p.sd, p.baseline_mean)


def _shift(comparison: str, metric: str, first: Gap, other: Gap) -> Shift:
    def scaled(gap: Gap, by: float) -> tuple[float, float, int]:
        return gap.mean * by, gap.sd * by, gap.n

    per_pct = [100 / abs(g.base) if g.base else float("nan") for g in (first, other)]
    absolute = welch(scaled(first, 1.0), scaled(other, 1.0))
    relative = welch(scaled(first, per_pct[0]), scaled(other, per_pct[1]))
    return Shift(comparison, metric, first, other, absolute, relative)


def welch(a: tuple[float, float, int], b: tuple[float, float, int]) -> tuple[float, float, float]:
    """b's mean - a's, from (mean, sd, n) each, with its Welch 95% t-interval (unequal spreads)."""
    from scipy.special import stdtrit

    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = a, b
    change = mean_b - mean_a
    if min(n_a, n_b) < 2 or math.isnan(sd_a) or math.isnan(sd_b):
        return change, float("nan"), float("nan")
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    if va + vb == 0:
        return change, change, change
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))  # Welch-Satterthwaite
    half = float(stdtrit(df, 0.975)) * math.sqrt(va + vb)
    return change, change - half, change + half
