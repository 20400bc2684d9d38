"""What a report holds, shared by make.py (which fills it) and render.py (which shows it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from balance_lab.report import collect, published, sequential, stats

PLOTS = {
    "ppl_vs_maxvio": "Perplexity vs MaxVio_global",
    "maxvio_batch_steps": "MaxVio_batch over training",
    "expert_loads": "Expert loads per layer (validation set; beside each layer its load statistics)",
    "straggler_steps": "Straggler factor over training",
    "domain_specialisation": "Expert selection per domain",
}


def plot_title(name: str) -> str:
    """A plot's heading: PLOTS's, or the configuration's for its load-history heatmap."""
    from balance_lab.report.history import HISTORY_PREFIX

    if name.startswith(HISTORY_PREFIX):
        return f"Expert load over training: {name.removeprefix(HISTORY_PREFIX)} (lowest seed)"
    return PLOTS[name]


@dataclass
class Report:
    sweep: str
    tracking_uri: str
    runs: collect.SweepRuns
    columns: list[stats.Column]
    summary: pd.DataFrame
    baseline: str | None
    paired: list[stats.Paired]
    paper: published.Comparison | None
    commands: list[str]
    git_shas: list[str]
    invocations: dict[str, int] = field(
        default_factory=dict
    )  # sweep parent runs by status, e.g. {"FINISHED": 1, "KILLED": 1}
    config_text: str = ""  # the resolved config.yaml of the first counted run
    plots: dict[str, str] = field(default_factory=dict)  # name -> path relative to the report folder
    files: dict[str, Path] = field(default_factory=dict)  # what was written: kind -> path
    sequential_plan: sequential.Plan | None = None  # a `sweep --until-resolved` plan, if the sweep ran one
    sequential_rows: list[sequential.Row] = field(default_factory=list)
    cost_columns: list[stats.Column] = field(default_factory=list)  # what imbalance would cost (imbalance.py)
    val_loads: dict[str, dict] = field(default_factory=dict)  # run id -> loads/val_loads.json
    convergence: Any = None  # convergence.Convergence: val ppl at every validation, paired (or None)
    against: dict[str, str] = field(default_factory=dict)  # configuration -> its baseline (one per context)
    plots_left_out: list[str] = field(default_factory=list)  # configurations of another model shape (no loads plot)
    shifts: list = field(default_factory=list)  # across.Shift: each gap at two settings (one sweep, two models)

    @property
    def baseline_text(self) -> str:
        """The baseline as a title names it: one label, or where each context has its own, all of them."""
        several = sorted(set(self.against.values()))
        if len(several) < 2:
            return str(self.baseline)
        groups = " and ".join(sorted({key.split(".")[0] for key in self.runs.context_keys}))
        return f"the baseline at the same {groups} ({', '.join(several)})"
