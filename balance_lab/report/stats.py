"""Numbers of a report: mean, std and n over seeds per configuration; paired differences with a 95% interval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Column:
    key: str  # MLflow metric key
    title: str  # column header
    better: str | None  # "min" | "max" | None (no best to highlight)
    fallback: str | None = None  # an older metric with the same meaning, used where `key` is missing
    digits: int = 3


BASE_COLUMNS = [
    Column("val/ppl", "val ppl", "min", digits=3),
    Column("val/bpb", "val bpb", "min", digits=4),
    Column("val/maxvio_global", "MaxVio global", "min", digits=3),
    Column("train/maxvio_batch_mean", "MaxVio batch", "min", fallback="train/maxvio_batch", digits=3),
    Column("train/maxvio_compute_batch_mean", "MaxVio compute", "min", fallback="train/maxvio_compute_batch", digits=3),
]
THROUGHPUT = Column("train/tokens_per_sec", "tokens/s", "max", digits=0)
# Slots dropped at expert capacity (model/capacity.py): shown where some run dropped any.
DROPPED = [
    Column("train/dropped_frac_mean", "dropped train", "min", digits=4),
    Column("val/dropped_frac", "dropped val", "min", digits=4),
]
SPECIALISATION_PREFIX = "val/top_expert_freq/"
# Forced balance draws every token's experts at random: the floor of MaxVio (and, on a GPU, the best-case
# step time), a reference to measure the methods against, never the best method in a column.
REFERENCE_PARAM = "params.balance.force_balance"
REFERENCE_NOTE = (
    "forced balance (each token's experts drawn at random), the floor of MaxVio and the best-case "
    "step time; a bound to measure the methods against, so never marked best"
)


def columns_for(runs: pd.DataFrame, extra: list[str] = ()) -> list[Column]:
    """The report's columns: the base ones, per-domain specialisation, throughput, then `extra`
    (`key` or `key:min` / `key:max` to mark which way is better)."""
    domains = sorted(
        c.removeprefix(f"metrics.{SPECIALISATION_PREFIX}")
        for c in runs.columns
        if c.startswith(f"metrics.{SPECIALISATION_PREFIX}")
    )
    columns = (
        BASE_COLUMNS + [Column(SPECIALISATION_PREFIX + d, f"top expert {d}", None) for d in domains] + [THROUGHPUT]
    )
    dropped = runs.get(f"metrics.{DROPPED[0].key}", pd.Series(dtype=float))
    if (pd.to_numeric(dropped, errors="coerce") > 0).any():
        columns += DROPPED
    for spec in extra:
        key, _, better = spec.partition(":")
        columns.append(Column(key, key, better or None, digits=4))
    return columns


def metric_values(runs: pd.DataFrame, column: Column) -> pd.Series:
    values = runs.get(f"metrics.{column.key}", pd.Series(index=runs.index, dtype=float))
    if column.fallback:
        values = values.fillna(runs.get(f"metrics.{column.fallback}", pd.Series(index=runs.index, dtype=float)))
    return pd.to_numeric(values, errors="coerce")


def per_seed(runs: pd.DataFrame, column: Column) -> pd.DataFrame:
    """seed x label table of a column's values: the mean where a configuration ran a seed twice, nan
    where it lacks the seed. The pairing every paired comparison (fixed, sequential, published) reads."""
    values = pd.DataFrame({"label": runs["label"], "seed": runs["seed"], "v": metric_values(runs, column)})
    return values.dropna().pivot_table(index="seed", columns="label", values="v", aggfunc="mean")


def summarise(runs: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """One row per configuration (in sweep order): label, n seeds, then `<key> mean|std|n` per column."""
    if runs.empty:
        return pd.DataFrame(columns=["label", "n_seeds"])
    data = pd.DataFrame({"order": runs["order"], "label": runs["label"], "seed": runs["seed"]})
    for column in columns:
        data[column.key] = metric_values(runs, column)
    grouped = data.groupby(["order", "label"], sort=True)
    summary = grouped["seed"].nunique().rename("n_seeds").to_frame()
    summary["seeds"] = grouped["seed"].agg(lambda s: ",".join(str(int(x)) for x in sorted(s.dropna())))
    forced = runs.get(REFERENCE_PARAM, pd.Series(index=runs.index, dtype=object)).astype(str).str.lower() == "true"
    summary["reference"] = forced.groupby([runs["order"], runs["label"]], sort=True).any()
    for column in columns:
        stats = grouped[column.key].agg(["mean", "std", "count"])
        summary[f"{column.key} mean"], summary[f"{column.key} std"] = stats["mean"], stats["std"]
        summary[f"{column.key} n"] = stats["count"].astype(int)
    return summary.reset_index().drop(columns="order")


def shown_label(row, quote: str = "") -> str:
    """A configuration's name in a table: its label (between `quote`s, e.g. Markdown's backticks), marked
    where it is the forced-balance reference."""
    return f"{quote}{row['label']}{quote}" + (" (reference)" if row.get("reference", False) else "")


def best_labels(summary: pd.DataFrame, column: Column) -> set[str]:
    """The configurations with the best mean in this column (ties included), reference rows left out."""
    if column.better is None or summary.empty:
        return set()
    summary = summary[~summary["reference"]] if "reference" in summary else summary
    means = summary[f"{column.key} mean"]
    if means.notna().sum() < 2:
        return set()
    best = means.min() if column.better == "min" else means.max()
    return set(summary.loc[means == best, "label"])


@dataclass
class Paired:
    label: str  # configuration A
    baseline: str  # configuration B
    metric: str
    n: int  # seeds both ran
    mean: float  # mean over seeds of A - B
    low: float  # 95% interval (t distribution, n - 1 degrees of freedom); nan when n < 2
    high: float
    sd: float = float("nan")  # standard deviation of the paired differences (n - 1 in the denominator)
    baseline_mean: float = float("nan")  # the baseline's mean over the same seeds
    paper: float | None = None  # the published difference, scaled to the baseline's mean (published.py)

    @property
    def resolvable_pct(self) -> float:
        """The smallest difference these seeds resolve: the interval's half-width, in % of the baseline."""
        if math.isnan(self.low) or not self.baseline_mean:
            return float("nan")
        return 100 * (self.high - self.low) / 2 / abs(self.baseline_mean)

    @property
    def seeds_to_resolve(self) -> int | None:
        """Seeds for 80% power at 95% to resolve the observed difference (evidence/seeds.py)."""
        from balance_lab.evidence.seeds import seeds_needed

        return seeds_needed(self.mean, self.sd) if self.n >= 2 else None

    @property
    def seeds_for_paper(self) -> int | None:
        """Seeds for 80% power at 95% to resolve the paper's difference, given our spread."""
        from balance_lab.evidence.seeds import seeds_needed

        return seeds_needed(self.paper, self.sd) if self.n >= 2 and self.paper is not None else None

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "n < 2: no interval"
        if self.sd == 0:
            return "no interval: every seed differs by the same amount"
        if math.isnan(self.low):
            return "no interval: non-finite values"
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "no clear difference"


def baselines(runs: pd.DataFrame, chosen: str) -> dict[str, str]:
    """Each configuration's baseline: `chosen`; where the runs hold several contexts (collect._contexts,
    e.g. one sweep at two models), the configuration of `chosen`'s method in the configuration's own
    context. A configuration whose context lacks that method gets none."""
    labels = _labels_in_order(runs)
    if "context" not in runs or runs["context"].nunique() < 2:
        return {label: chosen for label in labels if label != chosen}
    first = runs.drop_duplicates("label").set_index("label")
    method = first.loc[chosen, "treatment"]
    partner = {row.context: label for label, row in first.iterrows() if row.treatment == method}
    return {
        label: partner[first.loc[label, "context"]]
        for label in labels
        if first.loc[label, "context"] in partner and partner[first.loc[label, "context"]] != label
    }


def paired_differences(runs: pd.DataFrame, columns: list[Column], baseline: str | Mapping[str, str]) -> list[Paired]:
    """For every configuration against its baseline (one for all, or label -> baseline from `baselines`),
    per metric: A - B on the seeds both ran."""
    from balance_lab.evidence.seeds import half_width

    against = baseline if isinstance(baseline, Mapping) else {label: baseline for label in _labels_in_order(runs)}
    results = []
    for column in columns:
        table = per_seed(runs, column)
        for label in _labels_in_order(runs):
            baseline = against.get(label)
            if baseline is None or label == baseline or label not in table or baseline not in table:
                continue
            diff = (table[label] - table[baseline]).dropna()
            n = len(diff)
            if n == 0:
                continue
            mean = float(diff.mean())
            sd = float(diff.std(ddof=1)) if n >= 2 else float("nan")
            if n >= 2 and sd > 0:  # no spread (a discrete metric): the t model does not apply
                half = half_width(sd, n)
                low, high = mean - half, mean + half
            else:
                low = high = float("nan")
            base = float(table.loc[diff.index, baseline].mean())
            results.append(Paired(label, baseline, column.key, n, mean, low, high, sd, base))
    return results


def _labels_in_order(runs: pd.DataFrame) -> list[str]:
    return list((runs.sort_values("order") if "order" in runs else runs)["label"].drop_duplicates())
