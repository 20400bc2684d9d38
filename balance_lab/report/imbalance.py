"""What a run's imbalance would cost, computed after the fact from its recorded validation loads
(loads/val_loads.json: tokens per layer and expert), so runs recorded before these statistics existed
get them too. Each statistic is per MoE layer, then averaged over layers.

- load statistics of the per-expert load relative to uniform (load / mean load): coefficient of
  variation, min / p50 / p95 / max, exp(entropy) / E of the load distribution (the effective share of
  experts in use: 1 when balanced, 1/E when one expert takes everything), the dead-expert fraction;
- the expert-parallel straggler factor: E experts placed contiguously on P ranks, a rank's load the
  sum of its E/P experts', max rank load / mean rank load (1 for P = 1; 1 + MaxVio for P = E), for
  every power of two 2 <= P <= E that divides E;
- the counterfactual dropped fraction at capacity factor f: C = ceil((slots / E) * f) over the whole
  validation set, dropped = sum_e max(0, load_e - C) / slots. Capacity applies per micro-batch in
  training, where loads are less even than over the whole set, so this is a lower bound on what a
  run with that capacity would drop (a sum of positive parts is at least the positive part of the sum).
"""

from __future__ import annotations

import math

import numpy as np

from balance_lab.diagnostics.expert_parallel import ep_degrees, reference_degree

CAPACITY_FACTORS = (1.0, 1.25)


def load_statistics(counts_LE: np.ndarray) -> dict[str, float]:
    """The statistics below, averaged over layers."""
    return {key: float(values_L.mean()) for key, values_L in layer_statistics(counts_LE).items()}


def layer_statistics(counts_LE: np.ndarray) -> dict[str, np.ndarray]:
    """Per MoE layer (L,): the loads' CV, min / p50 / p95 / max relative to uniform, the effective
    share exp(entropy) / E, and the dead-expert fraction."""
    counts_LE = np.asarray(counts_LE, dtype=np.float64)
    mean_L1 = counts_LE.mean(axis=1, keepdims=True).clip(min=1e-12)
    relative_LE = counts_LE / mean_L1
    share_LE = counts_LE / counts_LE.sum(axis=1, keepdims=True).clip(min=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy_L = -np.where(share_LE > 0, share_LE * np.log(share_LE), 0.0).sum(axis=1)
    n_experts = counts_LE.shape[1]
    return {
        "cv": relative_LE.std(axis=1),
        "min": relative_LE.min(axis=1),
        "p50": np.percentile(relative_LE, 50, axis=1),
        "p95": np.percentile(relative_LE, 95, axis=1),
        "max": relative_LE.max(axis=1),
        "effective_share": np.exp(entropy_L) / n_experts,
        "dead_frac": (counts_LE == 0).mean(axis=1),
    }


def layer_notes(counts_LE: np.ndarray) -> list[str]:
    """One short line of statistics per layer, drawn beside the validation-load heatmap."""
    counts_LE = np.asarray(counts_LE, dtype=np.float64)
    stats = layer_statistics(counts_LE)
    ranks = reference_degree(counts_LE.shape[1]) or 1
    notes = []
    for layer, counts_E in enumerate(counts_LE):
        straggler = straggler_factor(counts_E[None], ranks)
        dead = int((counts_E == 0).sum())
        notes.append(
            f"CV {stats['cv'][layer]:.2f}  eff {stats['effective_share'][layer]:.2f}  "
            f"p95 {stats['p95'][layer]:.2f}  EP{ranks} {straggler:.2f}  dead {dead}"
        )
    return notes


def straggler_factor(counts_LE: np.ndarray, ranks: int) -> float:
    """max rank load / mean rank load with E experts contiguous on `ranks` ranks, averaged over layers."""
    counts_LE = np.asarray(counts_LE, dtype=np.float64)
    n_layers, n_experts = counts_LE.shape
    if n_experts % ranks:
        raise ValueError(f"{ranks} expert-parallel ranks do not divide {n_experts} experts")
    rank_LP = counts_LE.reshape(n_layers, ranks, n_experts // ranks).sum(axis=2)
    return float((rank_LP.max(axis=1) / rank_LP.mean(axis=1).clip(min=1e-12)).mean())


def dropped_fraction(counts_LE: np.ndarray, capacity_factor: float) -> float:
    """Counterfactual dropped share of the slots at this capacity (a lower bound; see above)."""
    counts_LE = np.asarray(counts_LE, dtype=np.float64)
    fractions = []
    for counts_E in counts_LE:
        slots = counts_E.sum()
        capacity = math.ceil((slots / len(counts_E)) * capacity_factor)
        fractions.append(np.clip(counts_E - capacity, 0, None).sum() / max(slots, 1.0))
    return float(np.mean(fractions))


def metrics_of(val_loads: dict) -> dict[str, float]:
    """The report's columns of one run (names under `val/`, as the run's own metrics are)."""
    counts_LE = np.asarray(val_loads["layers"], dtype=np.float64)
    stats = load_statistics(counts_LE)
    out = {f"val/load_{key}": value for key, value in stats.items()}
    for ranks in ep_degrees(counts_LE.shape[1]):
        out[f"val/straggler_ep{ranks}"] = straggler_factor(counts_LE, ranks)
    for factor in CAPACITY_FACTORS:
        out[f"val/dropped_at_{factor:g}"] = dropped_fraction(counts_LE, factor)
    return out


NOTE = (
    "From each run's validation loads (recorded by every run, older ones included): *straggler EP P*: with "
    "the experts placed contiguously on P expert-parallel ranks, the busiest rank's tokens over the mean rank's "
    "(the slowest rank sets the MoE layer's time; 1 = balanced); *dropped at f*: the share of slots an expert "
    "capacity of f x the mean load would drop, a lower bound for a run trained with it (capacity applies per "
    "micro-batch, where loads are less even); *effective experts*: exp(entropy) / E of the load (1 = all in "
    "use); *load CV*: the loads' coefficient of variation. Per MoE layer, averaged over layers."
)


def add_metrics(finished, loads: dict[str, dict]) -> None:
    """Add these statistics to the finished runs' table as `metrics.<key>` columns (in place), from
    `loads` (run id -> its val_loads.json); a run without loads is left blank."""
    rows = {run_id: metrics_of(item) for run_id, item in loads.items() if item.get("layers")}
    keys = sorted({key for values in rows.values() for key in values})
    for key in keys:
        finished[f"metrics.{key}"] = [rows.get(run_id, {}).get(key, float("nan")) for run_id in finished["run_id"]]


def columns(finished) -> list:
    """The report's cost columns for the statistics present: straggler factors, drops, effective experts, CV."""
    from balance_lab.report.stats import Column

    present = {c.removeprefix("metrics.") for c in finished.columns if c.startswith("metrics.val/")}
    degrees = sorted(int(k.removeprefix("val/straggler_ep")) for k in present if k.startswith("val/straggler_ep"))
    shown = [p for p in (8, degrees[-1] if degrees else None) if p in degrees]
    result = [Column(f"val/straggler_ep{p}", f"straggler EP{p}", "min", digits=3) for p in dict.fromkeys(shown)]
    result += [Column(f"val/dropped_at_{f:g}", f"dropped at {f:g}", "min", digits=4) for f in CAPACITY_FACTORS]
    result += [
        Column("val/load_effective_share", "effective experts", "max", digits=3),
        Column("val/load_cv", "load CV", "min", digits=3),
    ]
    return [c for c in result if c.key in present]


PAIRED_PREFIXES = ("val/straggler_ep", "val/dropped_at_")  # what the paired comparison also covers
