"""A run's expert load over training as a heatmap: a panel per MoE layer, step x expert (the run's
artifact loads/steps.png; the report draws the same per configuration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from balance_lab.figures import expert_ticks, pyplot, save

MAX_LAYER_PANELS = 12  # layers drawn in a load-history figure (evenly spread over the model's MoE layers)


def draw(
    first_R: np.ndarray, steps_R: np.ndarray, layer_ids: list[int], counts_RLE: np.ndarray, path: Path, title: str
) -> Path:
    """Per MoE layer a panel of optimizer step x expert: each recorded step's (or merged run of steps')
    load / uniform load, 1 = balanced, 0 = dead (no token), 4+ = saturated (one expert taking many
    times its share), so when and where an expert collapsed or died shows at a glance."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    n_rows, n_layers, n_experts = counts_RLE.shape
    shown = sorted({round(i * (n_layers - 1) / max(MAX_LAYER_PANELS - 1, 1)) for i in range(MAX_LAYER_PANELS)})
    shown = shown if n_layers > MAX_LAYER_PANELS else list(range(n_layers))
    counts = counts_RLE.astype(np.float64)
    relative_RLE = counts / counts.mean(axis=2, keepdims=True).clip(min=1e-12)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(2.0, min(float(relative_RLE.max()), 4.0)))
    x_edges = np.append(first_R - 1, first_R[-1] - 1 + steps_R[-1])  # step s covers (s-1, s]
    n_cols = 1 if len(shown) <= 3 else 2
    n_panel_rows = -(-len(shown) // n_cols)
    panel_height = 1.1 + 0.025 * n_experts
    fig, axes = plt.subplots(
        n_panel_rows,
        n_cols,
        figsize=(7 * n_cols, 0.8 + panel_height * n_panel_rows),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, layer in zip(axes.flat, shown):
        mesh = ax.pcolormesh(
            x_edges, np.arange(n_experts + 1) - 0.5, relative_RLE[:, layer].T, cmap="RdBu_r", norm=norm, rasterized=True
        )
        ax.set_title(f"layer {layer_ids[layer]}", fontsize=8)
        ax.set_ylabel("expert", fontsize=7)
        expert_ticks(ax, n_experts, axis="y")
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for column in range(n_cols):  # the lowest panel drawn in each column carries the step axis
        lowest = [ax for ax in axes[:, column] if ax.get_visible()][-1]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("optimizer step", fontsize=8)
    merged = f"; a column sums {int(steps_R.max())} steps" if steps_R.max() > 1 else ""
    some = f", {len(shown)} of {n_layers} MoE layers" if len(shown) < n_layers else ""
    fig.suptitle(f"{title}: expert load / uniform load per step{merged}{some}", fontsize=9)
    fig.colorbar(mesh, ax=axes, shrink=min(0.9, 4 / n_panel_rows), label="load / uniform load", extend="max")
    return save(fig, path, tight=False)
