"""The report's figures from the runs' routing records: each configuration's expert load over training
(loads/steps.parquet of its lowest seed, as the validation-load heatmap) and the straggler factor over
training per configuration (the runs' logged train/straggler_ep<P>). Runs recorded before these
existed have neither: their configurations are left out of these figures, nothing else changes."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from balance_lab.diagnostics import heatmap
from balance_lab.diagnostics.artifacts import ARTIFACT_DIR, HISTORY_FILE
from balance_lab.diagnostics.expert_parallel import reference_degree
from balance_lab.diagnostics.load_history import read
from balance_lab.report import collect, plots

HISTORY_ARTIFACT = f"{ARTIFACT_DIR}/{HISTORY_FILE}"
HISTORY_PREFIX = "load_history:"  # report.plots names of the per-configuration heatmaps


def load_history_plots(runs: pd.DataFrame, order: list[str], tracking_uri: str, out: Path) -> dict[str, Path]:
    """name -> PNG of each configuration's lowest-seed load history (the first plots.MAX_PANELS)."""
    chosen = {}
    for label in order[: plots.MAX_PANELS]:
        mine = runs[runs["label"] == label].sort_values("seed")
        if not mine.empty:
            chosen[label] = mine.iloc[0]

    def one(item):
        label, row = item
        try:
            with collect.local_artifact(row["artifact_uri"], row["run_id"], HISTORY_ARTIFACT, tracking_uri) as parquet:
                first_R, steps_R, layer_ids, counts_RLE = read(parquet)
        except Exception:  # noqa: BLE001 - a run from before the load history (or unreadable): no figure
            return label, None
        path = out / "plots" / "load_history" / f"{_file_name(label)}.png"
        title = f"{label} (seed {row['seed']})"
        return label, heatmap.draw(first_R, steps_R, layer_ids, counts_RLE, path, title)

    with ThreadPoolExecutor(max_workers=4) as pool:
        drawn = dict(pool.map(one, chosen.items()))
    return {f"{HISTORY_PREFIX}{label}": path for label, path in drawn.items() if path is not None}


def straggler_plot(runs: pd.DataFrame, order: list[str], n_experts: int, tracking_uri: str, out: Path) -> Path | None:
    """train/straggler_ep<P> against the step per configuration (mean over seeds, min-max band)."""
    ranks = reference_degree(n_experts)
    if ranks is None:
        return None
    curves = collect.curves(runs, order[: plots.MAX_LEGEND], f"train/straggler_ep{ranks}", tracking_uri)
    if not any(curves.values()):
        return None
    return plots.over_training(
        curves,
        out / "plots" / "straggler_steps.png",
        f"straggler factor at EP {ranks}: busiest rank / mean rank",
        f"Straggler factor at EP {ranks}",
        len(order),
        log=False,
    )


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")[:100] or "configuration"
