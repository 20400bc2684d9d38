"""`balance-lab sweep NAME --until-resolved METRIC`: the grid's seeds first, then `step` more seeds at a
time, until the paired interval of METRIC excludes zero for every configuration against the baseline
or the seed budget is spent.

Every seed the sweep may use and every look are fixed before the first run and recorded in the
parent run, and the decision after each look follows evidence/sequential.py's group-sequential rule,
so stopping when the interval looks good does not inflate false positives. One parent run holds
every batch; an interrupted sweep is continued by the same command (finished runs are skipped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from balance_lab.errors import ConfigError
from balance_lab.evidence import sequential
from balance_lab.store import tracking
from balance_lab.store.patience import wait_for_store
from balance_lab.sweeping.grid import Grid, GridPoint
from balance_lab.sweeping.launch import Outcome, closing_parent, open_parent, run_points, settle

SEED_KEY = "seed"
# What a run ends with that a sweep can be run until resolved on (the run's final value of each).
METRICS = (
    "val/ppl",
    "val/bpb",
    "val/loss",
    "val/maxvio_global",
    "train/maxvio_batch_mean",
    "train/maxvio_compute_batch_mean",
    "val/dead_experts",
    "train/dropped_frac_mean",
    "val/dropped_frac",
)
METRIC_PREFIXES = ("val/top_expert_freq/", "val/maxvio_global/layer_")
TAG_SEQUENTIAL = "balance_lab.sequential"  # on the parent run: why the sweep stopped
ARTIFACT = "sequential.json"  # on the parent run: the plan, every look, every pair


@dataclass(frozen=True)
class SeedPlan:
    seeds: tuple[int, ...]  # every seed the sweep may use, in the order they are spent
    looks: tuple[int, ...]  # seeds run at each look (a prefix of `seeds`)

    def batch(self, look: int) -> tuple[int, ...]:
        """The seeds look `look` (0-based) adds."""
        start = self.looks[look - 1] if look else 0
        return self.seeds[start : self.looks[look]]


def check_metric(metric: str, grid: Grid) -> None:
    """A metric every run of the grid ends with (a layer the grid's models have)."""
    if metric not in METRICS and not metric.startswith(METRIC_PREFIXES):
        raise ConfigError(
            f"--until-resolved {metric!r}: not a metric a run ends with; choose one of "
            f"{', '.join(METRICS)}, or {'<domain>, '.join(METRIC_PREFIXES)}<i>"
        )
    layer_prefix = METRIC_PREFIXES[1]
    if metric.startswith(layer_prefix):
        layers = sorted(set.intersection(*(set(p.moe_layers) for p in grid.points)))
        if metric.removeprefix(layer_prefix) not in map(str, layers):
            raise ConfigError(
                f"--until-resolved {metric!r}: not a MoE layer of every run; choose one of "
                f"{', '.join(f'{layer_prefix}{i}' for i in layers)}"
            )


def plan_seeds(grid: Grid, max_seeds: int, step: int | None) -> SeedPlan:
    """The grid's seeds, then the next unused integers above the largest, up to max_seeds in all."""
    if SEED_KEY not in grid.dimensions:
        raise ConfigError(
            f"--until-resolved needs a grid over seeds; sweep {grid.name} sweeps "
            f"{', '.join(grid.swept_keys)} (add seeds=[0,1,2])"
        )
    try:
        first = [int(s) for s in grid.dimensions[SEED_KEY]]
    except ValueError:
        raise ConfigError(f"seeds must be integers, not {grid.dimensions[SEED_KEY]}") from None
    if len(set(first)) < 2:
        raise ConfigError(f"--until-resolved needs at least 2 seeds in the first batch, not {first}")
    if max_seeds < len(first):
        raise ConfigError(f"--max-seeds {max_seeds} is below the first batch's {len(first)} seeds ({first})")
    step = step or len(first)
    if step < 1:
        raise ConfigError(f"--step {step}: must be at least 1 seed")
    seeds, nxt = list(dict.fromkeys(first)), max(first) + 1
    while len(seeds) < max_seeds:
        if nxt not in seeds:
            seeds.append(nxt)
        nxt += 1
    return SeedPlan(tuple(seeds), sequential.planned_looks(len(set(first)), step, max_seeds))


def label(point: GridPoint) -> str:
    """A configuration: the point's swept values other than the seed."""
    return ", ".join(f"{k}={v}" for k, v in point.values.items() if k != SEED_KEY) or "(one configuration)"


def choose_baseline(grid: Grid, wanted: str | None) -> str:
    labels = list(dict.fromkeys(label(p) for p in grid.points))
    if len(labels) < 2:
        raise ConfigError(f"--until-resolved compares configurations, and this grid has one ({labels[0]})")
    if wanted is None:
        return labels[0]
    matches = [text for text in labels if text == wanted] or [text for text in labels if wanted in text]
    if len(matches) != 1:
        raise ConfigError(
            f"--baseline {wanted!r} matches {len(matches)} configurations; choose one of {'; '.join(labels)}"
        )
    return matches[0]


def check_plan_unchanged(client, grid: Grid, metric: str, baseline: str, plan: SeedPlan) -> None:
    """Refuse a plan that differs from one this comparison already ran with on some of the same seeds
    (--max-seeds raised or --step changed after a look): the 5% error rate holds for a plan fixed
    before the first look. The same grid means the same swept values and other overrides."""
    experiment = client.get_experiment_by_name(grid.name)
    if experiment is None:
        return
    earlier = client.search_runs(
        [experiment.experiment_id], filter_string=f"params.`sequential.metric` = '{metric}'", max_results=10_000
    )
    mine = {f"sweep.values.{k}": ",".join(v) for k, v in grid.dimensions.items() if k != SEED_KEY}
    seeds, looks = ",".join(map(str, plan.seeds)), ",".join(map(str, plan.looks))
    for parent in earlier:
        params = parent.data.params
        same_grid = all(params.get(k) == v for k, v in mine.items()) and _plain_fixed(
            params.get("sweep.fixed_overrides", "-").split(" ")
        ) == _plain_fixed(grid.fixed)
        if params.get("sequential.baseline") != baseline or not same_grid:
            continue
        theirs = (params.get("sequential.seeds", ""), params.get("sequential.looks", ""))
        if theirs == (seeds, looks) or not set(theirs[0].split(",")) & set(seeds.split(",")):
            continue  # the same plan continued, or a replication on fresh seeds
        raise ConfigError(
            f"--until-resolved {metric}: parent run {parent.info.run_id} planned this comparison with looks at "
            f"{theirs[1]} seeds (seeds {theirs[0]}), this command at {looks} (seeds {seeds}); a plan changed after a "
            "look does not keep the 5% error rate: use its --max-seeds and --step, or fresh seeds for a new question"
        )


def _plain_fixed(overrides: list[str]) -> set[str]:
    return {o for o in overrides if o and o != "-" and o.partition("=")[0].lstrip("+~") not in (SEED_KEY, "seeds")}


def pair_outcomes(
    values: dict[tuple[str, int], float],
    labels: list[str],
    plan: SeedPlan,
    look: int,
    baseline: str,
    bounds: list[float],
) -> tuple[dict[str, sequential.Outcome], list[str]]:
    """Per configuration against the baseline, the sequential outcome over looks 0..`look`; and the
    (configuration, seed) values missing from them (a run that did not finish leaves its look incomplete,
    and the looks after it are not analysed)."""
    missing = [f"{lbl} seed {s}" for lbl in labels for s in plan.seeds[: plan.looks[look]] if (lbl, s) not in values]
    complete = [n for n in plan.looks[: look + 1] if all((lbl, s) in values for lbl in labels for s in plan.seeds[:n])]
    done = complete[-1] if complete and complete == list(plan.looks[: len(complete)]) else 0
    result = {}
    for lbl in labels:
        if lbl != baseline:
            diffs = [values[(lbl, s)] - values[(baseline, s)] for s in plan.seeds[:done]]
            result[lbl] = sequential.analyse(diffs, plan.looks, bounds)
    return result, missing


def run_until_resolved(
    client,
    first: Grid,
    grid_for: Callable[[tuple[int, ...]], Grid],
    metric: str,
    plan: SeedPlan,
    baseline: str,
    command: str,
    launch: dict,
    sweep_dir: Path,
) -> tuple[str, list[Outcome], bool]:
    """Run look after look; returns the parent run id, every outcome and whether the sweep stopped on an
    incomplete look (runs that did not finish). `launch` holds run_points' jobs, rerun, extra, tracking_uri."""
    from balance_lab.console import console as make_console

    console = make_console()
    bounds = sequential.boundaries(plan.looks)
    parent_id = open_parent(client, first, command)
    record = tracking.TrackedRun(client, parent_id, "")
    record.log_params(
        {
            "sequential.metric": metric,
            "sequential.baseline": baseline,
            "sequential.rule": sequential.RULE,
            "sequential.seeds": ",".join(map(str, plan.seeds)),
            "sequential.looks": ",".join(map(str, plan.looks)),
            "sequential.boundaries": ",".join(repr(b) for b in bounds),  # full precision: the report reuses them
        }
    )
    console.print(
        f"[bold]{first.name}[/]: until {metric} is resolved against [bold]{baseline}[/]; looks at "
        f"{', '.join(map(str, plan.looks))} seeds (seeds {plan.seeds[0]}..{plan.seeds[-1]}, declared now); "
        f"{sequential.RULE}"
    )
    labels = list(dict.fromkeys(label(p) for p in first.points))
    every: list[Outcome] = []
    values: dict[tuple[str, int], float] = {}
    with closing_parent(client, parent_id) as outcome_of_sweep:
        for look in range(len(plan.looks)):
            grid = first if look == 0 else grid_for(plan.batch(look))
            title = f" · look {look + 1}/{len(plan.looks)} (seeds {', '.join(map(str, plan.batch(look)))})"
            results, _ = run_points(
                client, grid, parent_id, sweep_dir=sweep_dir / f"look-{look + 1}", title=title, **launch
            )
            every += results
            lacking = []  # runs that finished without the metric (a domain the data does not have)
            for point, outcome in zip(grid.points, results):
                if outcome.status in ("FINISHED", "SKIPPED") and metric in outcome.metrics:
                    values[(label(point), int(point.values[SEED_KEY]))] = outcome.metrics[metric]
                elif outcome.status in ("FINISHED", "SKIPPED"):
                    lacking.append(point.run_name)
            pairs, missing = pair_outcomes(values, labels, plan, look, baseline, bounds)
            reason = _lacking_reason(metric, lacking) or _stop_reason(pairs, missing, look, plan)
            wait_for_store(
                lambda pairs=pairs, reason=reason: _record(
                    record, client, parent_id, metric, baseline, plan, bounds, pairs, reason
                ),
                "recording the look",
            )
            console.print(_look_table(pairs, metric, baseline, look))
            if reason:
                console.print(f"[bold]stopped[/]: {reason}")
                break
        outcome_of_sweep["status"] = settle(client, parent_id, every)
    return parent_id, every, bool(missing)


def _lacking_reason(metric: str, lacking: list[str]) -> str:
    if not lacking:
        return ""
    return (
        f"{len(lacking)} runs finished without recording {metric} ({', '.join(lacking[:3])}): not a metric these "
        "runs log (a domain their data does not have?); no further look can resolve it"
    )


def _stop_reason(pairs: dict[str, sequential.Outcome], missing: list[str], look: int, plan: SeedPlan) -> str:
    if missing:
        return (
            f"look {look + 1} is incomplete ({len(missing)} runs did not finish: {'; '.join(missing[:4])}); the rule "
            "needs every planned seed: run the same command again to retry them"
        )
    if pairs and all(p.resolved_at is not None for p in pairs.values()):
        return f"every pair resolved by look {look + 1} ({plan.looks[look]} seeds)"
    if look == len(plan.looks) - 1:
        settled = sum(p.resolved_at is not None for p in pairs.values())
        return f"the seed budget is spent: {settled} of {len(pairs)} pairs resolved within {plan.looks[-1]} seeds"
    return ""


def _record(record, client, parent_id, metric, baseline, plan, bounds, pairs, reason) -> None:
    record.log_json(
        {
            "rule": sequential.RULE,
            "metric": metric,
            "baseline": baseline,
            "seeds": list(plan.seeds),
            "looks": list(plan.looks),
            "boundaries": bounds,
            "stopped": reason,
            "pairs": {
                lbl: {"statement": o.statement(), "looks": [asdict(x) for x in o.looks]} for lbl, o in pairs.items()
            },
        },
        ARTIFACT,
    )
    client.set_tag(parent_id, TAG_SEQUENTIAL, reason or "running")


def _look_table(pairs: dict[str, sequential.Outcome], metric: str, baseline: str, look: int):
    from rich.table import Table

    table = Table(title=f"after look {look + 1}: {metric}, configuration - {baseline}", header_style="bold")
    for name in ("configuration", "seeds", "mean diff", "sequential 95% interval", "|t| to stop", "status"):
        table.add_column(name, justify="right" if name in ("seeds", "mean diff", "|t| to stop") else "left")
    for lbl, outcome in pairs.items():
        last = outcome.looks[-1] if outcome.looks else None
        if last is None:
            table.add_row(lbl, "-", "-", "-", "-", outcome.statement())
            continue
        shown = outcome.final
        table.add_row(
            lbl,
            str(shown.seeds),
            f"{shown.mean:+.4f}",
            f"[{shown.low:+.4f}, {shown.high:+.4f}]",
            f"{shown.boundary:.2f}",
            outcome.statement(),
        )
    return table
