"""Matplotlib for the files balance-lab draws (the report's figures, a run's load heatmap): no display,
one resolution, saved and closed."""

from __future__ import annotations

from pathlib import Path

DPI = 110


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def expert_ticks(ax, n_experts: int, axis: str = "x") -> None:
    step = max(1, n_experts // 16)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(range(0, n_experts, step))
    ax.tick_params(labelsize=6)


def save(fig, path: Path, tight: bool = True) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if not tight else None)
    plt.close(fig)
    return path
