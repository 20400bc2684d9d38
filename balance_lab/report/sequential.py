"""A report's view of a `sweep --until-resolved`: the sequential interval of every paired metric.

The plan (seeds in order, looks, baseline, metric) is read from the sweep's latest parent run that
has one; the intervals are recomputed from the finished runs with evidence/sequential.py, over the
looks whose planned seeds every configuration completed. The metric the sweep stopped on is marked;
the others are read at the same looks (repeated confidence intervals hold at every look together).
Only the contexts the plan's sweep trained (collect._contexts: e.g. its model, where one store holds
the sweep at two) are paired, each configuration against the baseline's method in its own context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from balance_lab.evidence import sequential
from balance_lab.report import stats


@dataclass
class Plan:
    metric: str
    baseline: str  # report label of the baseline configuration
    seeds: tuple[int, ...]
    looks: tuple[int, ...]
    stopped: str  # the sweep's own reason for stopping (tag on the parent run)
    pairs: dict[str, str] = field(default_factory=dict)  # label -> its baseline's label (its own context)
    bounds: tuple[float, ...] = ()  # the |t| boundaries the sweep recorded (empty: recompute them)
    changed: str = ""  # how an earlier invocation's plan for the same runs differed (empty: it did not)


@dataclass
class Row:
    label: str
    metric: str
    outcome: sequential.Outcome
    baseline_mean: float

    @property
    def ruled_out_pct(self) -> float:
        """For an unresolved pair: differences larger than this (in % of the baseline) lie outside the
        sequential interval (what the evidence rules out); nan for a resolved one."""
        final = self.outcome.final
        if final is None or not self.baseline_mean or self.outcome.resolved_at is not None:
            return float("nan")
        return 100 * max(abs(final.low), abs(final.high)) / abs(self.baseline_mean)


def read_plan(runs) -> Plan | None:
    """The latest sequential plan among the sweep's parent runs, None when the sweep never ran one."""
    parents = runs.parents
    column = "params.sequential.looks"
    if parents.empty or column not in parents or parents[column].isna().all():
        return None
    latest = parents[parents[column].notna()].sort_values("start_time").iloc[-1]
    scope = _plan_scope(runs.finished, parents, latest)
    changed = _changed_plans(runs.finished, parents, latest, scope)
    baseline = _label_of(scope, str(latest["params.sequential.baseline"]))
    if baseline is None:
        return None
    stopped = latest.get("tags.balance_lab.sequential")
    stopped = "" if pd.isna(stopped) else str(stopped)
    if stopped == "running" and latest.get("status") not in (None, "RUNNING"):  # a signal ended it between looks
        reason = latest.get("tags.balance_lab.status_reason")
        known = not pd.isna(reason) and bool(reason)  # the sweep's own reason says how to continue
        stopped = f"interrupted, {reason}" if known else "interrupted; the same command continues it"
    return Plan(
        str(latest["params.sequential.metric"]),
        baseline,
        tuple(int(s) for s in str(latest["params.sequential.seeds"]).split(",")),
        tuple(int(n) for n in str(latest[column]).split(",")),
        stopped,
        stats.baselines(scope, baseline),
        _recorded_bounds(latest.get("params.sequential.boundaries")),
        changed,
    )


def _recorded_bounds(text) -> tuple[float, ...]:
    """The boundaries a sweep recorded, so that its report judges by the rule the sweep stopped by."""
    try:
        return tuple(float(b) for b in str(text).split(",")) if isinstance(text, str) and text else ()
    except ValueError:
        return ()


PLAN_KEYS = ("params.sequential.metric", "params.sequential.baseline", "params.sequential.seeds")
LOOKS_KEY = "params.sequential.looks"


def _same_plan(parent, latest, keys=PLAN_KEYS) -> bool:
    return all(str(parent.get(k)) == str(latest.get(k)) for k in keys)


def _children(finished: pd.DataFrame, parent_ids: set) -> pd.DataFrame:
    of_parent = pd.Series(False, index=finished.index)
    for column in ("tags.mlflow.parentRunId", "params.logger.parent_run_id"):  # MLflow's nesting; the run's config
        if column in finished:
            of_parent |= finished[column].isin(parent_ids)
    return finished[of_parent]


def _plan_scope(finished: pd.DataFrame, parents: pd.DataFrame, latest) -> pd.DataFrame:
    """The finished runs in the contexts that the plan's invocations trained (all of them where the
    runs know no parent, e.g. a store filled before parent runs were recorded)."""
    same = parents[[_same_plan(p, latest) for _, p in parents.iterrows()]]
    if "context" not in finished or "run_id" not in same:
        return finished
    children = _children(finished, set(same["run_id"]))
    if children.empty:
        return finished
    return finished[finished["context"].isin(set(children["context"]))]


def _changed_plans(finished: pd.DataFrame, parents: pd.DataFrame, latest, scope: pd.DataFrame) -> str:
    """An earlier sequential invocation for the same metric and baseline, whose runs lie in this plan's
    contexts, sharing seeds with it but with other seeds or looks: a budget or step changed after a
    look, which voids the 5%. (A replication on fresh seeds shares none: a new plan, not a change.)"""
    if "run_id" not in parents or "context" not in scope:
        return ""
    contexts = set(scope["context"])
    seeds = set(str(latest["params.sequential.seeds"]).split(","))
    for _, parent in parents[parents[LOOKS_KEY].notna()].iterrows():
        same_question = _same_plan(parent, latest, ("params.sequential.metric", "params.sequential.baseline"))
        if not same_question or _same_plan(parent, latest, (*PLAN_KEYS, LOOKS_KEY)):
            continue
        if not seeds & set(str(parent["params.sequential.seeds"]).split(",")):
            continue
        if contexts & set(_children(finished, {parent["run_id"]}).get("context", ())):
            return (
                f"an earlier invocation planned looks at {parent[LOOKS_KEY]} seeds (seeds "
                f"{parent['params.sequential.seeds']}), this one at {latest[LOOKS_KEY]}: a plan changed after a "
                "look does not keep the 5% error rate"
            )
    return ""


def _label_of(finished: pd.DataFrame, values: str) -> str | None:
    """The report label of the runs whose swept values are `key=value, key=value` (the sweep's label);
    where the values match several contexts, the first's."""
    chosen = finished
    for item in values.split(", "):
        key, _, value = item.partition("=")
        column = f"tags.sweep.{key}"
        if column not in chosen:
            return None
        chosen = chosen[chosen[column].astype(str) == value]
    return None if chosen.empty else str(chosen["label"].iloc[0])


def rows(runs, plan: Plan, columns: list[stats.Column]) -> list[Row]:
    """Every configuration against the plan's baseline, per column, over the planned seeds."""
    recorded = len(plan.bounds) == len(plan.looks)
    bounds = list(plan.bounds) if recorded else sequential.boundaries(plan.looks)
    finished = runs.finished
    result = []
    for column in columns:
        table = stats.per_seed(finished, column)
        for label, baseline in (plan.pairs or {lbl: plan.baseline for lbl in table.columns}).items():
            if label == baseline or label not in table or baseline not in table:
                continue
            diffs = []
            for seed in plan.seeds:  # the planned order, up to the first seed either configuration lacks
                if seed not in table.index or pd.isna(table.at[seed, label]) or pd.isna(table.at[seed, baseline]):
                    break
                diffs.append(table.at[seed, label] - table.at[seed, baseline])
            outcome = sequential.analyse(diffs, plan.looks, bounds)
            if outcome.looks:
                base = float(table.loc[list(plan.seeds[: outcome.looks[-1].seeds]), baseline].mean())
                result.append(Row(label, column.key, outcome, base))
    return result


def signs(plan: Plan | None, rows_: list[Row]) -> dict[tuple[str, str, str], int]:
    """(label, the plan's baseline for it, metric) -> +1 / -1 where the sequential interval resolved
    above / below zero, 0 where it did not: how a sweep run until resolved orders its pairs."""
    found = {}
    for row in rows_:
        baseline = plan.pairs.get(row.label, plan.baseline)
        sign = 0 if row.outcome.resolved_at is None else (1 if row.outcome.final.mean > 0 else -1)
        found[(row.label, baseline, row.metric)] = sign
    return found
