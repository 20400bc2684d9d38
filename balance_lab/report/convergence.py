"""Validation perplexity at every validation of the runs, paired against the baseline step by step:
whether a method converges faster (lower early) shows here, where the final-step table cannot show it
(the router orthogonality loss claims faster convergence, SimBal arXiv 2506.14038)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from balance_lab.report import collect, stats

METRIC = "val/ppl"


@dataclass
class Convergence:
    steps: list[int]  # the validation steps every counted run has
    means: pd.DataFrame  # configuration x step: mean val ppl over seeds
    paired: dict[int, list[stats.Paired]]  # step -> each configuration minus the baseline


def at_validations(
    finished: pd.DataFrame, baseline: str | Mapping[str, str] | None, tracking_uri: str
) -> Convergence | None:
    """None unless the runs validated at two or more common steps."""
    if finished.empty or baseline is None:
        return None
    histories = collect.metric_histories(list(finished["run_id"]), METRIC, tracking_uri)
    common = None
    for series in histories.values():
        common = set(series.index) if common is None else common & set(series.index)
    steps = sorted(int(s) for s in common or ())
    if len(steps) < 2:
        return None
    table = finished[["run_id", "label", "seed", "order"]].copy()
    for step in steps:
        table[f"metrics.{METRIC}@{step}"] = [histories[r].get(step) for r in table["run_id"]]
    columns = {step: stats.Column(f"{METRIC}@{step}", f"step {step}", "min") for step in steps}
    means = pd.DataFrame(
        {f"step {step}": table.groupby("label", sort=False)[f"metrics.{METRIC}@{step}"].mean() for step in steps}
    )
    means = means.loc[[label for label in dict.fromkeys(table.sort_values("order")["label"])]]
    paired = {step: stats.paired_differences(table, [column], baseline) for step, column in columns.items()}
    return Convergence(steps, means, paired)


def markdown(convergence: Convergence | None, baseline: str | None, md_table) -> list[str]:
    if convergence is None:
        return []
    header = ["configuration", *(f"step {s}" for s in convergence.steps)]
    rows = [[f"`{label}`", *(f"{v:.3f}" for v in row)] for label, row in convergence.means.iterrows()]
    labels = [p.label for p in convergence.paired[convergence.steps[0]]]
    paired_rows = []
    for label in labels:
        cells = []
        for step in convergence.steps:
            p = next((p for p in convergence.paired[step] if p.label == label), None)
            cells.append("-" if p is None or p.n < 2 else f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}] {p.verdict}")
        paired_rows.append([f"`{label}`", *cells])
    right = set(range(1, len(header)))
    return [
        "## Perplexity during training",
        "",
        f"Validation perplexity at every validation (mean over seeds), then each configuration minus {baseline} "
        "on the same seed with its 95% t-interval: a method that converges faster is lower early. Each "
        "step's interval is its own 5% test: over several steps one may exclude zero by chance alone.",
        "",
        md_table(header, rows, right=right),
        "",
        md_table(header, paired_rows, right=right),
        "",
    ]
