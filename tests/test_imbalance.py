"""What imbalance would cost, from recorded validation loads (report/imbalance.py): each statistic by
hand on constructed load matrices, and in the report of the session's sweep."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from balance_lab.metrics import maxvio
from balance_lab.report import imbalance
from tests.helpers.groups import SWEPT_GROUP

BALANCED = [10, 10, 10, 10]
COLLAPSED = [40, 0, 0, 0]  # one expert takes everything, three are dead
SKEWED = [20, 12, 8, 0]  # a dead expert among uneven ones


def test_load_statistics_by_hand():
    stats = imbalance.load_statistics(np.array([BALANCED, COLLAPSED, SKEWED]))
    # relative loads: (1,1,1,1), (4,0,0,0), (2,1.2,0.8,0)
    cv = [0.0, math.sqrt(3), math.sqrt(((2 - 1) ** 2 + 0.2**2 + 0.2**2 + 1) / 4)]
    assert stats["cv"] == pytest.approx(sum(cv) / 3)
    assert stats["min"] == pytest.approx((1 + 0 + 0) / 3) and stats["max"] == pytest.approx((1 + 4 + 2) / 3)
    assert stats["p50"] == pytest.approx((1 + 0 + 1.0) / 3)  # the middle of (0, 0.8, 1.2, 2) is 1.0
    p = np.array(SKEWED) / 40
    skewed_share = math.exp(-sum(x * math.log(x) for x in p if x > 0)) / 4
    assert stats["effective_share"] == pytest.approx((1 + 0.25 + skewed_share) / 3)
    assert stats["dead_frac"] == pytest.approx(4 / 12)


def test_straggler_factor_is_one_on_one_rank_and_one_plus_maxvio_on_e_ranks():
    loads = np.array([COLLAPSED, SKEWED])
    assert imbalance.straggler_factor(loads, 1) == pytest.approx(1.0)
    assert imbalance.straggler_factor(loads, 4) == pytest.approx(1 + maxvio(loads.tolist()))
    # 2 ranks: (40, 0) -> 2.0 and (32, 8) -> 1.6
    assert imbalance.straggler_factor(loads, 2) == pytest.approx((2.0 + 1.6) / 2)
    assert imbalance.ep_degrees(16) == [2, 4, 8, 16] and imbalance.ep_degrees(12) == [2, 4]


def test_counterfactual_drops_by_hand():
    # capacity 1.0: C = 10 per expert; SKEWED drops 10 + 2 of 40 slots; 1.25: C = 13 drops 7
    assert imbalance.dropped_fraction(np.array([SKEWED]), 1.0) == pytest.approx(12 / 40)
    assert imbalance.dropped_fraction(np.array([SKEWED]), 1.25) == pytest.approx(7 / 40)
    assert imbalance.dropped_fraction(np.array([BALANCED]), 1.0) == 0.0


@pytest.mark.parametrize("factor", imbalance.CAPACITY_FACTORS)
def test_the_counterfactual_drops_are_what_training_at_that_capacity_drops_on_the_same_routing(factor):
    """One forward's loads recorded without a capacity, then the same forward with it: the slots the
    capacity drops are the counterfactual's (for one micro-batch the lower bound is exact)."""
    import torch

    from balance_lab.balancing import build_balancer
    from balance_lab.model import MoELM
    from balance_lab.model.args import ModelArgs, RoutingArgs

    torch.manual_seed(3)
    args = ModelArgs(vocab_size=64, seq_len=32, d_model=32, n_layers=2, n_heads=2, n_routed_experts=8, top_k=2)
    model = MoELM(args, make_balancer=lambda: build_balancer({"name": "none"}, 8)).eval()
    with torch.no_grad():
        model.moe_layers[0].router.proj.weight.mul_(8.0)  # a sharper router: loads uneven enough to drop
        tokens_BS = torch.randint(0, 64, (4, 32))
        free = model(tokens_BS)
        model.moe_layers[0].router.options = RoutingArgs(capacity_factor=factor)
        capped = model(tokens_BS)
    counts_LE = free.counts_LBE.sum(dim=1).numpy()
    slots = int(counts_LE.sum())
    expected = imbalance.dropped_fraction(counts_LE, factor)
    assert expected > 0 and int(capped.dropped_L.sum()) / slots == pytest.approx(expected)
    assert torch.equal(capped.counts_LBE, free.counts_LBE)  # the same routing, before dropping


def test_runs_without_loads_stay_blank():
    finished = pd.DataFrame({"run_id": ["a", "b"]})
    imbalance.add_metrics(finished, {"a": {"layers": [SKEWED]}})
    assert finished.loc[0, "metrics.val/straggler_ep4"] == pytest.approx(2.0)
    assert math.isnan(finished.loc[1, "metrics.val/straggler_ep4"])


def paired_table_text(tracking_uri: str) -> str:
    """The terminal's paired table of paper_main, wide enough that no cell wraps."""
    from rich.console import Console

    from balance_lab.report import make, render

    console = Console(width=400, record=True, file=io.StringIO())
    console.print(render._paired_table(make.make_report(tracking_uri, "paper_main")))
    return console.export_text()


@pytest.mark.slow
@SWEPT_GROUP
def test_the_report_has_what_imbalance_would_cost_from_the_recorded_loads(swept):
    markdown = (swept.reports / "report.md").read_text()
    assert "## What imbalance would cost" in markdown and "straggler EP8" in markdown
    paired = paired_table_text(swept.uri)  # the terminal names each metric by its column title
    assert "straggler EP8" in paired and "val/straggler_ep" not in paired, paired
    summary = pd.read_csv(swept.reports / "summary.csv")
    runs = pd.read_csv(swept.reports / "runs.csv")
    loads_of = {}
    for run_id in runs["run_id"].dropna():
        path = next(swept.root.rglob(f"{run_id}/artifacts/loads/val_loads.json"), None)
        if path is not None:
            loads_of[run_id] = json.loads(path.read_text())
    assert loads_of, "the session's runs recorded their loads"
    for label, group in runs.dropna(subset=["seed"]).groupby("configuration"):
        values = [
            imbalance.straggler_factor(np.array(loads_of[r]["layers"]), 8) for r in group["run_id"] if r in loads_of
        ]
        row = summary[summary["label"] == label].iloc[0]
        assert row["val/straggler_ep8 mean"] == pytest.approx(np.mean(values))


def test_the_training_statistics_equal_the_reports_on_the_same_loads():
    """metrics.load_statistics (torch, logged per step in training) and report/imbalance.py (numpy,
    from recorded loads) compute the same numbers."""
    import torch

    from balance_lab.metrics import LOAD_STAT_NAMES, load_statistics

    loads = np.array([COLLAPSED, SKEWED, BALANCED])
    values = load_statistics(torch.tensor(loads), [2, 4]).tolist()
    by_name = dict(zip([*LOAD_STAT_NAMES, "straggler_ep2", "straggler_ep4"], values))
    report = imbalance.metrics_of({"layers": loads.tolist()})
    assert by_name["load_cv"] == pytest.approx(report["val/load_cv"])
    assert by_name["load_effective_share"] == pytest.approx(report["val/load_effective_share"])
    assert by_name["dead_frac"] == pytest.approx(report["val/load_dead_frac"])
    assert by_name["straggler_ep2"] == pytest.approx(report["val/straggler_ep2"])
    assert by_name["straggler_ep4"] == pytest.approx(report["val/straggler_ep4"])


def test_a_run_logs_the_load_statistics_of_its_steps(store):
    from tests.helpers.runners import run_in_this_process
    from tests.helpers.short import SMALL, short_run
    from tests.helpers.stores import all_runs

    result = run_in_this_process(*SMALL, *short_run(steps=4, val_every=4))
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = all_runs(store)
    for name in (
        "train/load_cv",
        "train/load_effective_share",
        "train/dead_frac",
        "train/straggler_ep2",
        "train/straggler_ep8",
    ):  # 8 experts: EP 2, 4 and 8
        assert name in run.data.metrics, name
    assert run.data.metrics["train/straggler_ep8"] == pytest.approx(1 + run.data.metrics["train/maxvio_batch"])
