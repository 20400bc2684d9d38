"""The report's figures (PNG): quality vs balance, balance over training, and where tokens went.

Every function takes tidy data (one entry per configuration, in sweep order) and a path, draws
one figure and returns the path; none reads MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from balance_lab.figures import expert_ticks as _expert_ticks
from balance_lab.figures import pyplot as _pyplot
from balance_lab.figures import save as _save

MAX_PANELS = 16  # configurations drawn in the heatmap figures (the first ones in sweep order)
MAX_LEGEND = 12  # configurations with a legend entry / a curve of their own


def ppl_vs_maxvio(summary: pd.DataFrame, path: Path) -> Path:
    """One point per configuration: mean over seeds, error bars one std (absent with one seed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    many = len(summary) > MAX_LEGEND
    for i, row in summary.reset_index(drop=True).iterrows():
        x, y = row["val/maxvio_global mean"], row["val/ppl mean"]
        ax.errorbar(
            x,
            y,
            xerr=_nan_to_zero(row["val/maxvio_global std"]),
            yerr=_nan_to_zero(row["val/ppl std"]),
            fmt="o",
            capsize=3,
            color=f"C{i % 10}",
            label=None if many else f"{row['label']} (n={row['n_seeds']})",
        )
        if many:  # a legend of dozens of entries is unreadable: name the points instead
            ax.annotate(str(row["label"]), (x, y), fontsize=5, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MaxVio global (validation set)  ← better balanced")
    ax.set_ylabel("validation perplexity  ← better")
    ax.set_title("Quality vs balance (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if not many:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def maxvio_over_training(curves: dict[str, list[pd.Series]], path: Path, n_configurations: int | None = None) -> Path:
    """MaxVio_batch against the step: mean over seeds as a line, min-max over seeds as a band."""
    return over_training(curves, path, "MaxVio batch (log scale)", "Balance during training", n_configurations)


def over_training(
    curves: dict[str, list[pd.Series]],
    path: Path,
    ylabel: str,
    title: str,
    n_configurations: int | None = None,
    log: bool = True,
) -> Path:
    """A per-step metric against the step: mean over seeds as a line, min-max over seeds as a band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = list(curves.items())[:MAX_LEGEND]
    n_configurations = n_configurations or len(curves)
    for i, (label, series) in enumerate(drawn):
        if not series:
            continue
        table = pd.concat(series, axis=1).sort_index()
        ax.plot(table.index, table.mean(axis=1), color=f"C{i % 10}", label=label, lw=1.4)
        if table.shape[1] > 1:
            ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=f"C{i % 10}", alpha=0.15)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    shown = "" if n_configurations <= MAX_LEGEND else f", first {MAX_LEGEND} of {n_configurations} configurations"
    ax.set_title(f"{title} (mean over seeds, band: min-max{shown})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def expert_loads(
    loads: dict[str, np.ndarray], layer_ids: list[int], path: Path, row_notes: dict[str, list[str]] | None = None
) -> Path:
    """(configuration, layer) x expert: load relative to a uniform router (1 = perfectly balanced).
    One image with a band of rows per configuration (one axes draws and saves fast at any size);
    `row_notes`: per configuration, a line of statistics beside each layer's row."""
    labels = list(loads)[:MAX_PANELS]
    blocks = [loads[label] for label in labels]  # each (L, E)
    vmax = max(2.0, max(float(b.max()) for b in blocks))
    n_layers = blocks[0].shape[0]
    row_names = [
        f"{label}  L{layer_ids[i] if i < len(layer_ids) else i}"
        if i == 0
        else f"L{layer_ids[i] if i < len(layer_ids) else i}"
        for label in labels
        for i in range(n_layers)
    ]
    return _banded_heatmap(
        np.concatenate(blocks),
        row_names,
        n_layers,
        path,
        cmap="RdBu_r",
        norm=_centered(vmax),
        colour_label="load / uniform load",
        xlabel="routed expert",
        title="Expert load on the validation set (lowest seed of each configuration)",
        row_notes=[note for label in labels for note in (row_notes or {}).get(label, [""] * n_layers)],
    )


def domain_specialisation(frequencies: dict[str, dict[str, np.ndarray]], layer_ids: list[int], path: Path) -> Path:
    """(configuration, domain) x (layer, expert): the fraction of the domain's tokens that choose the
    expert among their top-K (the global-batch paper's specialisation figure)."""
    labels = list(frequencies)[:MAX_PANELS]
    domains = list(frequencies[labels[0]])
    n_layers, n_experts = next(iter(frequencies[labels[0]].values())).shape
    # a row per (configuration, domain): the layers side by side
    rows = [np.concatenate(list(frequencies[label][d])) for label in labels for d in domains]  # each (L * E,)
    row_names = [f"{label}  {d}" if i == 0 else d for label in labels for i, d in enumerate(domains)]
    layers = [layer_ids[i] if i < len(layer_ids) else i for i in range(n_layers)]
    return _banded_heatmap(
        np.stack(rows),
        row_names,
        len(domains),
        path,
        cmap="magma",
        norm=None,
        colour_label="selection frequency",
        xlabel="routed expert, layer by layer",
        title="Expert selection frequency per domain (validation set, lowest seed)",
        column_groups=(n_experts, [f"layer {i}" for i in layers]),
    )


def _banded_heatmap(
    grid: np.ndarray,
    row_names: list[str],
    band: int,
    path: Path,
    cmap: str,
    norm,
    colour_label: str,
    xlabel: str,
    title: str,
    column_groups: tuple[int, list[str]] | None = None,
    row_notes: list[str] | None = None,
) -> Path:
    """One imshow of `grid`, white lines between bands of `band` rows (and between column groups),
    and a note beside each row where `row_notes` has one."""
    plt = _pyplot()
    n_rows, n_cols = grid.shape
    notes = row_notes if row_notes and any(row_notes) else None
    width = min(4 + 0.22 * n_cols, 16) + (3.2 if notes else 0)
    fig, ax = plt.subplots(figsize=(width, 1.4 + 0.28 * n_rows))
    image = ax.imshow(grid, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    for r in range(band, n_rows, band):
        ax.axhline(r - 0.5, color="white", lw=2)
    ax.set_yticks(range(n_rows), row_names, fontsize=6)
    if column_groups:
        width, names = column_groups
        for c in range(width, n_cols, width):
            ax.axvline(c - 0.5, color="white", lw=2)
        ax.set_xticks([width * i + (width - 1) / 2 for i in range(len(names))], names, fontsize=7)
    else:
        _expert_ticks(ax, n_cols)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    for r, note in enumerate(notes or []):
        ax.text(n_cols - 0.5 + 0.4, r, note, fontsize=6, va="center", ha="left", family="monospace", clip_on=False)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colour_label, pad=0.2 if notes else 0.05)
    return _save(fig, path)


def _centered(vmax: float):
    from matplotlib.colors import TwoSlopeNorm

    return TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=vmax)


def _nan_to_zero(value: float) -> float:
    return 0.0 if pd.isna(value) else float(value)
