"""The report's sequential and power cells on hand-made tables: zero spread, an interrupted plan."""

import math

import pandas as pd

from balance_lab.report import collect, stats
from tests.test_report_stats import run_table


def test_identical_differences_give_no_interval_rather_than_a_zero_width_one():
    """A discrete metric (dead experts) can differ by the same amount at every seed: the t model does
    not apply, so no interval, no power and no sequential stop; a paper tie is said as one."""
    from balance_lab.evidence import sequential
    from balance_lab.report.render_evidence import power_cells

    same = stats.Paired("a", "b", "val/dead_experts", 3, 1.0, float("nan"), float("nan"), 0.0, 4.0, paper=0.0)
    assert same.verdict == "no interval: every seed differs by the same amount"
    assert power_cells(same) == ["-", "-", "-"]
    tie = stats.Paired("a", "b", "val/ppl", 3, -0.6, -1.4, 0.2, 0.3, 80.0, paper=0.0)
    assert power_cells(tie)[2] == "a tie"  # not "> 100,000"
    outcome = sequential.analyse([0.5] * 6, (2, 4, 6))
    assert outcome.resolved_at is None and all(math.isnan(look.low) for look in outcome.looks)
    assert outcome.statement() == "no interval: every one of the 6 seeds differs by the same +0.5"
    runs = run_table(
        [
            (f"{m}-s{seed}", seed, "FINISHED", f"h-{m}{seed}", seed, 5.0 + (m == "b"), 0.1, m, "0.0", "0.0")
            for m in ("a", "b")
            for seed in range(3)
        ]
    )
    split = collect.split_runs("x", runs)
    ppl = [c for c in stats.columns_for(split.finished) if c.key == "val/ppl"]
    (pair,) = stats.paired_differences(split.finished, ppl, "a")
    assert pair.mean == 1.0 and pair.sd == 0 and math.isnan(pair.low) and math.isnan(pair.resolvable_pct)


def test_a_sequential_sweep_stopped_by_a_signal_between_looks_says_so_rather_than_running():
    from types import SimpleNamespace

    from balance_lab.report import sequential

    finished = pd.DataFrame({"tags.sweep.balance": ["aux_loss", "loss_free"], "label": ["aux", "lf"]})
    parent = {
        "start_time": pd.Timestamp(1, unit="s"),
        "params.sequential.looks": "3,6",
        "params.sequential.baseline": "balance=aux_loss",
        "params.sequential.metric": "val/ppl",
        "params.sequential.seeds": "100,101,102,103,104,105",
        "tags.balance_lab.sequential": "running",  # the tag after look 1: no reason to stop yet
        "tags.balance_lab.status_reason": "stopped by SIGTERM",
    }
    killed = SimpleNamespace(parents=pd.DataFrame([{**parent, "status": "KILLED"}]), finished=finished)
    going = SimpleNamespace(parents=pd.DataFrame([{**parent, "status": "RUNNING"}]), finished=finished)
    assert sequential.read_plan(killed).stopped == "interrupted, stopped by SIGTERM"
    assert sequential.read_plan(going).stopped == "running" and sequential.read_plan(going).baseline == "aux"
