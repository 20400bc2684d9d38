"""The report's figures (PNG): quality vs balance, balance over training, and where tokens went.

Every function takes tidy data (one entry per configuration, in sweep order) and a path, draws
one figure and returns the path; none reads MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MAX_PANELS = 16  # configurations drawn in the heatmap figures (the first ones in sweep order)
MAX_LEGEND = 12  # configurations with a legend entry / a curve of their own
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def ppl_vs_maxvio(summary: pd.DataFrame, path: Path) -> Path:
    """One point per configuration: mean over seeds, error bars one std (absent with one seed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    many = len(summary) > MAX_LEGEND
    for i, row in summary.reset_index(drop=True).iterrows():
        x, y = row["val/maxvio_global mean"], row["val/ppl mean"]
        ax.errorbar(x, y, xerr=_nan_to_zero(row["val/maxvio_global std"]), yerr=_nan_to_zero(row["val/ppl std"]),
                    fmt="o", capsize=3, color=f"C{i % 10}", label=None if many else f"{row['label']} (n={row['n_seeds']})")
        if many:  # a legend of dozens of entries is unreadable: name the points instead
            ax.annotate(str(row["label"]), (x, y), fontsize=5, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MaxVio global (validation set)  ← better balanced")
    ax.set_ylabel("validation perplexity  ← better")
    ax.set_title("Quality vs balance (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if not many:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def maxvio_over_training(curves: dict[str, list[pd.Series]], path: Path) -> Path:
    """MaxVio_batch against the step: mean over seeds as a line, min-max over seeds as a band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = list(curves.items())[:MAX_LEGEND]
    for i, (label, series) in enumerate(drawn):
        if not series:
            continue
        table = pd.concat(series, axis=1).sort_index()
        ax.plot(table.index, table.mean(axis=1), color=f"C{i % 10}", label=label, lw=1.4)
        if table.shape[1] > 1:
            ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=f"C{i % 10}", alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MaxVio batch (log scale)")
    shown = "" if len(curves) <= MAX_LEGEND else f", first {MAX_LEGEND} of {len(curves)} configurations"
    ax.set_title(f"Balance during training (mean over seeds, band: min-max{shown})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def expert_loads(loads: dict[str, np.ndarray], layer_ids: list[int], path: Path) -> Path:
    """Per configuration, (layer x expert) load relative to a uniform router (1 = perfectly balanced)."""
    plt = _pyplot()
    labels = list(loads)[:MAX_PANELS]
    vmax = max(2.0, max(float(loads[label].max()) for label in labels))
    fig, axes = plt.subplots(len(labels), 1, figsize=(8, 0.8 + 1.3 * len(labels) + 0.2 * _rows(loads, labels)),
                             squeeze=False, gridspec_kw={"hspace": 0.6})
    for ax, label in zip(axes[:, 0], labels):
        relative_LE = loads[label]
        image = ax.imshow(relative_LE, aspect="auto", cmap="RdBu_r", norm=_centered(vmax), interpolation="nearest")
        ax.set_title(label, fontsize=8, loc="left")
        ax.set_ylabel("layer", fontsize=7)
        ax.set_yticks(range(relative_LE.shape[0]), layer_ids[: relative_LE.shape[0]])
        _expert_ticks(ax, relative_LE.shape[1])
    axes[-1, 0].set_xlabel("routed expert")
    fig.colorbar(image, ax=axes[:, 0], shrink=0.8, label="load / uniform load")
    fig.suptitle("Expert load on the validation set (lowest seed of each configuration)", fontsize=10)
    return _save(fig, path, tight=False)


def domain_specialisation(frequencies: dict[str, dict[str, np.ndarray]], layer_ids: list[int], path: Path) -> Path:
    """Per configuration and MoE layer, (domain x expert): the fraction of the domain's tokens that
    choose the expert among their top-K (the global-batch paper's specialisation figure)."""
    plt = _pyplot()
    labels = list(frequencies)[:MAX_PANELS]
    first = frequencies[labels[0]]
    domains, n_layers = list(first), next(iter(first.values())).shape[0]
    vmax = max(float(f.max()) for label in labels for f in frequencies[label].values())
    fig, axes = plt.subplots(len(labels), n_layers, figsize=(3.2 * n_layers + 1, 0.8 + 1.2 * len(labels)), squeeze=False,
                             gridspec_kw={"hspace": 0.35})
    for r, label in enumerate(labels):
        for layer in range(n_layers):
            ax = axes[r, layer]
            grid_DE = np.stack([frequencies[label][d][layer] for d in domains])
            image = ax.imshow(grid_DE, aspect="auto", cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_yticks(range(len(domains)), domains, fontsize=6)
            _expert_ticks(ax, grid_DE.shape[1])
            if r == 0:
                ax.set_title(f"layer {layer_ids[layer] if layer < len(layer_ids) else layer}", fontsize=8)
            if layer == 0:
                ax.set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    fig.colorbar(image, ax=axes, shrink=0.8, label="selection frequency")
    fig.suptitle("Expert selection frequency per domain (validation set, lowest seed)", fontsize=10, y=1.0)
    return _save(fig, path, tight=False)


def _expert_ticks(ax, n_experts: int) -> None:
    step = max(1, n_experts // 16)
    ax.set_xticks(range(0, n_experts, step))
    ax.tick_params(labelsize=6)


def _rows(loads: dict[str, np.ndarray], labels: list[str]) -> int:
    return sum(loads[label].shape[0] for label in labels)


def _centered(vmax: float):
    from matplotlib.colors import TwoSlopeNorm

    return TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=vmax)


def _nan_to_zero(value: float) -> float:
    return 0.0 if pd.isna(value) else float(value)


def _save(fig, path: Path, tight: bool = True) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if not tight else None)
    plt.close(fig)
    return path
