"""The report's numbers on hand-made tables: grouping, re-runs, paired intervals, the paper's ordering."""

import math

import pandas as pd
import pytest

from balance_lab.report import across, collect, published, stats


def run_table(rows):
    """Rows of (run_name, seed, status, config_hash, start_time, ppl, maxvio, balance, alpha, update_rate)."""
    records = []
    for name, seed, status, hash_, start, ppl, vio, balance, alpha, rate in rows:
        records.append(
            {
                "run_id": f"id-{name}-{start}",
                "status": status,
                "start_time": pd.Timestamp(start, unit="s"),
                "artifact_uri": "/nowhere",
                "tags.mlflow.runName": name,
                "tags.balance_lab.config_hash": hash_,
                "tags.sweep.balance": balance,
                "tags.sweep.seed": str(seed),
                "params.seed": str(seed),
                "params.balance.name": balance,
                "params.balance.alpha": alpha,
                "params.balance.update_rate": rate,
                "params.model.name": "tiny",
                "params.trainer.max_steps": "300",
                "params.logger.parent_run_id": f"parent-{start}",
                "metrics.val/ppl": ppl,
                "metrics.val/maxvio_global": vio,
            }
        )
    return pd.DataFrame(records)


RUNS = run_table(
    [
        ("loss_free-u1e-2-sign-add-tiny-s0", 0, "FINISHED", "h-lf0", 1, 6.0, 0.20, "loss_free", "0.0", "0.01"),
        ("loss_free-u1e-2-sign-add-tiny-s1", 1, "FINISHED", "h-lf1", 2, 6.2, 0.30, "loss_free", "0.0", "0.01"),
        ("loss_free-u1e-2-sign-add-tiny-s2", 2, "FINISHED", "h-lf2", 3, 6.1, 0.10, "loss_free", "0.0", "0.01"),
        ("aux_loss-a1e-3-micro-tiny-s0", 0, "FINISHED", "h-ax0", 4, 7.0, 0.90, "aux_loss", "0.001", "0.0"),
        ("aux_loss-a1e-3-micro-tiny-s1", 1, "FINISHED", "h-ax1", 5, 8.2, 0.80, "aux_loss", "0.001", "0.0"),
        ("aux_loss-a1e-3-micro-tiny-s2", 2, "FINISHED", "h-ax2", 6, 9.1, 0.70, "aux_loss", "0.001", "0.0"),
        # an older finished run of the same config as aux s2 (a sweep --rerun): replaced by the newer one
        ("aux_loss-a1e-3-micro-tiny-s2", 2, "FINISHED", "h-ax2", 0, 99.0, 9.0, "aux_loss", "0.001", "0.0"),
        (
            "aux_loss-a1e-3-micro-tiny-s3",
            3,
            "FAILED",
            "h-ax3",
            7,
            float("nan"),
            float("nan"),
            "aux_loss",
            "0.001",
            "0.0",
        ),
    ]
)


def test_configurations_group_by_everything_but_the_seed_and_keep_the_latest_rerun():
    runs = collect.split_runs("paper_main", RUNS)
    assert len(runs.finished) == 6 and list(runs.unfinished["status"]) == ["FAILED"]
    assert sorted(runs.finished["label"].unique()) == ["aux_loss-a1e-3-micro", "loss_free-u1e-2-sign-add"]
    assert runs.common == "tiny"
    assert 99.0 not in set(runs.finished["metrics.val/ppl"])
    assert set(runs.varying) == {"balance.name", "balance.alpha", "balance.update_rate"}  # not seed, not logger.*


def test_summary_is_mean_std_and_n_over_seeds_in_sweep_order():
    runs = collect.split_runs("paper_main", RUNS)
    columns = stats.columns_for(runs.finished)
    summary = stats.summarise(runs.finished, columns).set_index("label")
    assert list(summary.index) == ["aux_loss-a1e-3-micro", "loss_free-u1e-2-sign-add"]  # sorted by sweep.balance
    aux = summary.loc["aux_loss-a1e-3-micro"]
    assert aux["n_seeds"] == 3 and aux["seeds"] == "0,1,2"
    assert aux["val/ppl mean"] == pytest.approx(8.1)  # (7.0 + 8.2 + 9.1) / 3
    assert aux["val/ppl std"] == pytest.approx(math.sqrt(((7.0 - 8.1) ** 2 + 0.1**2 + 1.0**2) / 2))
    ppl = next(c for c in columns if c.key == "val/ppl")
    assert stats.best_labels(summary.reset_index(), ppl) == {"loss_free-u1e-2-sign-add"}


def test_forced_balance_is_the_reference_row_never_the_best():
    forced = RUNS[RUNS["status"] == "FINISHED"].head(3).copy()  # its MaxVio (0.05) is the lowest of all
    forced["tags.mlflow.runName"] = [f"forced-tiny-s{s}" for s in range(3)]
    forced["tags.balance_lab.config_hash"] = [f"h-f{s}" for s in range(3)]
    forced["tags.sweep.balance"] = forced["params.balance.name"] = "forced"
    forced["params.balance.force_balance"], forced["metrics.val/maxvio_global"] = "True", 0.05
    runs = collect.split_runs("methods_2026", pd.concat([RUNS, forced], ignore_index=True))
    summary = stats.summarise(runs.finished, stats.columns_for(runs.finished))
    assert dict(zip(summary["label"], summary["reference"])) == {
        "aux_loss-a1e-3-micro": False,
        "forced": True,
        "loss_free-u1e-2-sign-add": False,
    }
    vio = next(c for c in stats.columns_for(runs.finished) if c.key == "val/maxvio_global")
    assert stats.best_labels(summary, vio) == {"loss_free-u1e-2-sign-add"}  # the best method, not the floor
    assert [stats.shown_label(row) for _, row in summary.iterrows()][1] == "forced (reference)"


def test_an_invocation_that_adds_one_method_keeps_the_grids_order_and_baseline():
    def parent(start, values):
        return {
            "run_id": f"p{start}",
            "start_time": pd.Timestamp(start, unit="s"),
            "status": "FINISHED",
            "tags.balance_lab.role": "sweep_parent",
            "params.sweep.values.balance": values,
        }

    grid, added = parent(0, "loss_free,aux_loss"), parent(9, "forced")  # later: `balance=forced` pinned
    runs = collect.split_runs("paper_main", pd.concat([RUNS, pd.DataFrame([grid, added])], ignore_index=True))
    summary = stats.summarise(runs.finished, stats.columns_for(runs.finished))
    assert list(summary["label"]) == ["loss_free-u1e-2-sign-add", "aux_loss-a1e-3-micro"]  # the file's order


def test_paired_difference_has_the_t_interval_written_out():
    runs = collect.split_runs("paper_main", RUNS)
    ppl = [c for c in stats.columns_for(runs.finished) if c.key == "val/ppl"]
    (pair,) = stats.paired_differences(runs.finished, ppl, baseline="aux_loss-a1e-3-micro")
    # loss_free - aux per seed: -1.0, -2.0, -3.0 -> mean -2, sd 1, t(0.975, 2) = 4.302653, half = 4.302653 / sqrt(3)
    assert pair.n == 3 and pair.mean == pytest.approx(-2.0)
    assert (pair.low, pair.high) == pytest.approx((-2.0 - 2.484138, -2.0 + 2.484138), abs=1e-5)
    assert pair.verdict == "no clear difference"  # the interval [-4.48, 0.48] contains 0
    vio = [c for c in stats.columns_for(runs.finished) if c.key == "val/maxvio_global"]
    (pair,) = stats.paired_differences(runs.finished, vio, baseline="aux_loss-a1e-3-micro")
    # -0.7, -0.5, -0.6 -> mean -0.6, sd 0.1, half 0.248414: entirely below zero
    assert pair.mean == pytest.approx(-0.6) and pair.high == pytest.approx(-0.6 + 0.248414, abs=1e-5)
    assert pair.verdict == "lower"


def with_aux_ppl(offsets: list[float]) -> pd.DataFrame:
    """RUNS with aux_loss's val ppl at seeds 0-2 set to loss-free's plus `offsets`."""
    runs = RUNS.copy()
    lf = runs[runs["params.balance.name"] == "loss_free"].set_index("params.seed")["metrics.val/ppl"]
    for seed, offset in zip(("0", "1", "2"), offsets):
        chosen = (runs["params.balance.name"] == "aux_loss") & (runs["params.seed"] == seed)
        runs.loc[chosen, "metrics.val/ppl"] = lf[seed] + offset
    return runs


def ordering(runs: pd.DataFrame, sweep: str = "paper_main", settled=None) -> list[str] | None:
    split = collect.split_runs(sweep, runs)
    comparison = published.compare(
        sweep, split.finished, stats.summarise(split.finished, stats.columns_for(split.finished)), settled
    )
    return None if comparison is None else comparison.verdicts


def test_the_papers_ordering_is_judged_pair_by_pair_by_our_paired_interval():
    """The paper: aux 9.56 ppl / 0.72 MaxVio above loss-free's 9.50 / 0.04. RUNS' ppl differences
    aux - lf are 1, 2, 3 (95% interval [-0.48, +4.48]: not resolved); MaxVio's 0.7, 0.5, 0.6 are."""
    assert ordering(RUNS) == [
        "perplexity: 0 of 1 pairs the paper orders match it, 1 are not resolved by the seeds "
        "(aux_loss-a1e-3-micro vs loss_free-u1e-2-sign-add)",
        "MaxVio_global: the ordering matches the paper (1 of 1 pairs, each resolved by the seeds)",
    ]
    resolved = ordering(with_aux_ppl([1.0, 1.1, 0.9]))[0]
    assert resolved == "perplexity: the ordering matches the paper (1 of 1 pairs, each resolved by the seeds)"
    against = ordering(with_aux_ppl([-1.0, -1.1, -0.9]))[0]
    assert against == (
        "perplexity: 0 of 1 pairs the paper orders match it, 1 go the other way "
        "(aux_loss-a1e-3-micro vs loss_free-u1e-2-sign-add)"
    )
    tied = ordering(with_aux_ppl([0.0, 0.0, 0.0]))[0]  # equal means are not an agreement with the paper
    assert "0 of 1 pairs the paper orders match it, 1 are not resolved" in tied
    one_seed = ordering(with_aux_ppl([1.0, 1.1, 0.9])[lambda r: r["params.seed"] == "0"])[0]
    assert "1 are not resolved by the seeds" in one_seed
    assert ordering(RUNS, "lbl_scope") is None  # no published table
    # a sweep run until resolved judges its own pairs by the sequential interval, not the fixed-n one
    pair = ("loss_free-u1e-2-sign-add", "aux_loss-a1e-3-micro", "val/ppl")
    assert ordering(RUNS, settled={pair: -1})[0].startswith("perplexity: the ordering matches the paper")
    assert "1 are not resolved" in ordering(with_aux_ppl([1.0, 1.1, 0.9]), settled={pair: 0})[0]
    # the paper's u = 1e-3 (40,000 steps) stands for the horizon's rate: 1e-2 at 300 steps, 1e-3 at 40,000
    runs = collect.split_runs("paper_main", RUNS)
    long = runs.finished.assign(**{"params.trainer.max_steps": "40000"})
    summary = stats.summarise(runs.finished, stats.columns_for(runs.finished))
    assert published.compare("paper_main", long, summary) is None  # only the aux row matches: nothing to order


def test_the_global_batch_sweep_pairs_domain_specialisation_too():
    from balance_lab.report.make import paired_columns

    runs = RUNS.assign(**{"metrics.val/top_expert_freq/code": 0.5, "metrics.val/top_expert_freq/math": 0.6})
    columns = stats.columns_for(runs)
    specialisation = {"val/top_expert_freq/code", "val/top_expert_freq/math"}
    assert specialisation <= {c.key for c in paired_columns("lbl_scope", columns)}
    assert not specialisation & {c.key for c in paired_columns("paper_main", columns)}
    assert "val/ppl" in {c.key for c in paired_columns("paper_main", columns)}


def test_runs_recorded_before_a_knob_existed_group_with_new_runs_that_leave_it_off():
    """balance.center, capacity_factor, ... came later: an old run lacks their params, a new run
    records them switched off; both trained the same thing, so they are one configuration."""
    old_and_new = RUNS.iloc[:3].copy()
    old_and_new.loc[old_and_new.index[1:], "params.balance.center"] = "False"
    old_and_new.loc[old_and_new.index[1:], "params.balance.capacity_factor"] = "None"
    runs = collect.split_runs("paper_main", old_and_new)
    assert runs.finished["config"].nunique() == 1 and runs.varying == []
    switched_on = old_and_new.copy()
    switched_on.loc[switched_on.index[2], "params.balance.capacity_factor"] = "1.25"
    assert collect.split_runs("paper_main", switched_on).varying == ["balance.capacity_factor"]


def test_the_config_hash_of_a_run_leaving_the_new_knobs_off_is_the_hash_it_had_before_they_existed():
    from balance_lab.store.tracking import config_hash

    before = {"seed": 0, "balance": {"name": "loss_free", "update_rate": 0.01, "rule": "sign"}}
    after = {
        "seed": 0,
        "balance": {
            **before["balance"],
            "center": False,
            "jitter": 0.0,
            "sinkhorn_iters": 0,
            "n_groups": 1,
            "group_topk": 1,
            "capacity_factor": None,
            "drop_policy": "probs",
            "renorm_kept": False,
        },
    }
    assert config_hash(after) == config_hash(before)
    assert config_hash({**after, "balance": {**after["balance"], "capacity_factor": 1.25}}) != config_hash(before)
    assert config_hash({**after, "balance": {**after["balance"], "center": True}}) != config_hash(before)


def test_a_half_width_beyond_1000_percent_of_a_near_zero_baseline_is_not_printed_as_a_number():
    from balance_lab.report.render_evidence import power_cells

    near_zero = stats.Paired("aux", "loss_free", "val/dropped_at_1.25", 3, 0.06, 0.04, 0.08, 0.01, 0.0001)
    ordinary = stats.Paired("aux", "loss_free", "val/ppl", 3, -0.6, -1.4, 0.2, 0.3, 80.0)
    assert power_cells(near_zero)[0] == "> 1,000" and power_cells(ordinary)[0] == "1.00"  # 0.8 / 80


def at_two_models() -> tuple[pd.DataFrame, pd.DataFrame]:
    """RUNS's finished runs (tiny), and the same sweep at model=small an hour later with the same numbers."""
    tiny = RUNS[RUNS["status"] == "FINISHED"].drop_duplicates("tags.balance_lab.config_hash", keep="first")
    small = tiny.assign(
        **{
            "params.model.name": "small",
            "tags.mlflow.runName": tiny["tags.mlflow.runName"].str.replace("-tiny-", "-small-"),
            "tags.balance_lab.config_hash": tiny["tags.balance_lab.config_hash"] + "-small",
            "run_id": tiny["run_id"] + "-small",
            "start_time": tiny["start_time"] + pd.Timedelta(hours=1),
        }
    )
    return tiny, small


def test_the_same_sweep_at_two_models_in_one_store_is_paired_within_each_model():
    """`sweep paper_main` then `sweep paper_main model=small` into one store: model.* differs although
    no sweep varies it, so each configuration is paired with aux_loss at its own model, never across."""
    tiny, small = at_two_models()
    small["metrics.val/ppl"] += 100.0  # far from tiny's: a cross-model pair would show it
    runs = collect.split_runs("paper_main", pd.concat([tiny, small], ignore_index=True))
    assert runs.context_keys == ["model.name"]
    against = stats.baselines(runs.finished, "aux_loss-a1e-3-micro-small")
    assert against == {  # the baseline method at the other model is not compared with it either
        "loss_free-u1e-2-sign-add-small": "aux_loss-a1e-3-micro-small",
        "loss_free-u1e-2-sign-add-tiny": "aux_loss-a1e-3-micro-tiny",
    }
    ppl = [c for c in stats.columns_for(runs.finished) if c.key == "val/ppl"]
    pairs = {p.label: p for p in stats.paired_differences(runs.finished, ppl, against)}
    for model in ("tiny", "small"):  # -1, -2, -3 per seed at both models, as in the one-model table
        assert pairs[f"loss_free-u1e-2-sign-add-{model}"].mean == pytest.approx(-2.0)
    summary = stats.summarise(runs.finished, stats.columns_for(runs.finished))
    comparison = published.compare("paper_main", runs.finished, summary)
    assert len(comparison.rows) == 4
    assert comparison.verdicts[0].startswith("perplexity: 0 of 2 pairs the paper orders match it, 2 are not resolved")
    from balance_lab.errors import ConfigError
    from balance_lab.report import make

    assert make._baseline(summary, "aux_loss", runs.finished).startswith("aux_loss")  # one method, two models
    with pytest.raises(ConfigError, match="matches 4 configurations"):
        make._baseline(summary, "-", runs.finished)
    one = collect.split_runs("paper_main", tiny)  # one model: no context, one baseline for all
    assert one.context_keys == [] and stats.baselines(one.finished, "aux_loss-a1e-3-micro") == {
        "loss_free-u1e-2-sign-add": "aux_loss-a1e-3-micro"
    }


def test_a_sequential_sweep_at_a_second_model_in_the_store_is_paired_within_that_model_only():
    """`sweep paper_main` (tiny), then `sweep paper_main model=small --until-resolved val/ppl` into one
    store: the plan's section pairs small with small, never tiny's runs and never across models."""
    import dataclasses

    from balance_lab.evidence import sequential as evidence
    from balance_lab.report import sequential
    from balance_lab.store.tracking import ROLE_SWEEP_PARENT, TAG_ROLE

    tiny, small = at_two_models()
    small = small.assign(**{"metrics.val/ppl": small["metrics.val/ppl"] + 100.0, "tags.mlflow.parentRunId": "seq"})
    parent = {
        "run_id": "seq",
        "status": "FINISHED",
        "start_time": small["start_time"].min(),
        f"tags.{TAG_ROLE}": ROLE_SWEEP_PARENT,
        "params.sequential.looks": "2,3",
        "params.sequential.baseline": "balance=aux_loss",
        "params.sequential.metric": "val/ppl",
        "params.sequential.seeds": "0,1,2",
        "tags.balance_lab.sequential": "not resolved within 3 seeds",
    }
    runs = collect.split_runs("paper_main", pd.concat([tiny, small, pd.DataFrame([parent])], ignore_index=True))
    plan = sequential.read_plan(runs)
    assert plan.baseline == "aux_loss-a1e-3-micro-small"
    assert plan.pairs == {"loss_free-u1e-2-sign-add-small": "aux_loss-a1e-3-micro-small"}
    ppl = [c for c in stats.columns_for(runs.finished) if c.key == "val/ppl"]
    (row,) = sequential.rows(runs, plan, ppl)
    assert row.label == "loss_free-u1e-2-sign-add-small" and row.outcome.final.mean == pytest.approx(-2.0)
    assert row.baseline_mean == pytest.approx(108.1)  # small's aux loss: (7.0 + 8.2 + 9.1) / 3 + 100
    # the report judges by the boundaries the sweep recorded (a sweep before look 1 was exact: 90.95)
    assert row.outcome.looks[0].boundary == evidence.boundaries((2, 3))[0]  # none recorded: recomputed
    recorded = runs.parents.assign(**{"params.sequential.boundaries": "90.95,4.5"})
    plan = sequential.read_plan(dataclasses.replace(runs, parents=recorded))
    assert plan.bounds == (90.95, 4.5)
    assert [look.boundary for look in sequential.rows(runs, plan, ppl)[0].outcome.looks] == [90.95, 4.5]
    assert plan.changed == ""
    # the budget raised after a look: an earlier invocation of the same question planned fewer seeds
    earlier = {**parent, "run_id": "seq-0", "start_time": parent["start_time"] - pd.Timedelta(minutes=5)}
    earlier |= {"params.sequential.looks": "2", "params.sequential.seeds": "0,1"}
    first_look = small[small["params.seed"].isin(["0", "1"])].assign(**{"tags.mlflow.parentRunId": "seq-0"})
    later = small[small["params.seed"] == "2"]
    table = pd.concat([tiny, first_look, later, pd.DataFrame([earlier, parent])], ignore_index=True)
    changed = sequential.read_plan(collect.split_runs("paper_main", table)).changed
    assert changed.startswith("an earlier invocation planned looks at 2 seeds (seeds 0,1), this one at 2,3")
    fresh = {**earlier, "params.sequential.seeds": "200,201"}  # a replication on other seeds is no change
    table = pd.concat([tiny, first_look, later, pd.DataFrame([fresh, parent])], ignore_index=True)
    assert sequential.read_plan(collect.split_runs("paper_main", table)).changed == ""


def test_the_expert_load_plots_draw_the_first_configurations_shape_and_name_the_others():
    import numpy as np

    from balance_lab.report import make

    relative = {"aux-small": np.ones((5, 32)), "aux-tiny": np.ones((3, 16)), "lf-small": np.ones((5, 32))}
    frequency = {label: {"code": loads} for label, loads in relative.items()}
    assert make._one_shape(relative, frequency) == ["aux-tiny"]
    assert list(relative) == list(frequency) == ["aux-small", "lf-small"]
    assert make._one_shape({}, {}) == []


def test_the_change_of_a_gap_between_two_settings_is_a_welch_interval():
    """Seeds at two models are independent runs: the two sets of paired differences are compared unpaired
    (Welch). Hand-checked against scipy.stats.ttest_ind(equal_var=False).confidence_interval()."""
    import numpy as np
    from scipy import stats as scipy_stats

    from balance_lab.report import across

    a, b = np.array([-1.0, -2.0, -3.0]), np.array([-0.5, -0.9, -1.0, -1.6])
    change, low, high = across.welch((a.mean(), a.std(ddof=1), 3), (b.mean(), b.std(ddof=1), 4))
    reference = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval()
    assert change == pytest.approx(1.0) and (low, high) == pytest.approx((reference.low, reference.high))
    assert math.isnan(across.welch((1.0, 0.5, 1), (2.0, 0.5, 3))[1])  # one seed: no interval


def test_a_report_of_one_sweep_at_two_models_says_whether_the_gap_moved():
    tiny, small = at_two_models()
    aux_small = small["params.balance.name"] == "aux_loss"
    small.loc[aux_small, "metrics.val/ppl"] = small.loc[aux_small, "metrics.val/ppl"] + 10.0  # gap -2 -> -12
    runs = collect.split_runs("paper_main", pd.concat([tiny, small], ignore_index=True))
    ppl = [c for c in stats.columns_for(runs.finished) if c.key == "val/ppl"]
    paired = stats.paired_differences(runs.finished, ppl, stats.baselines(runs.finished, "aux_loss-a1e-3-micro-tiny"))
    (shift,) = across.shifts(runs.finished, paired)
    assert (shift.first.context, shift.other.context) == ("tiny", "small")
    assert shift.comparison == "loss_free-u1e-2-sign-add - aux_loss-a1e-3-micro"
    assert (shift.first.mean, shift.other.mean) == pytest.approx((-2.0, -12.0))
    # tiny's aux mean 8.1 -> -24.69%; small's 18.1 -> -66.30%: sd 1 each (12.35 and 5.52 % points)
    assert shift.first.pct == pytest.approx(-200 / 8.1) and shift.other.pct == pytest.approx(-1200 / 18.1)
    assert shift.change[0] == pytest.approx(-10.0) and shift.change[2] < 0  # sd 1 at both, n 3: resolved
    assert shift.verdict == "larger at small"
    assert across.shifts(collect.split_runs("paper_main", tiny).finished, paired) == []  # one setting: nothing


def test_a_gap_that_flips_or_appears_between_two_settings_is_not_called_smaller():
    from balance_lab.report import across

    def verdict(first: tuple[float, float], other: tuple[float, float]) -> str:
        """(mean, baseline) per context, 4 seeds, sd 0.1: every change here is resolved."""
        gaps = [across.Gap(name, 4, mean, 0.1, base) for name, (mean, base) in zip(("tiny", "small"), (first, other))]
        return across._shift("lf - aux", "val/ppl", *gaps).verdict

    assert verdict((0.4, 100.0), (-3.0, 100.0)) == "changes sign at small (+0.4% to -3.0%)"  # not "smaller"
    assert verdict((0.0, 100.0), (-3.0, 100.0)) == "lower at small"  # no gap at tiny: one appears
    assert verdict((-3.0, 100.0), (-1.0, 100.0)) == "smaller at small"
    assert verdict((-1.0, 100.0), (-3.0, 100.0)) == "larger at small"
    assert verdict((-1.0, 100.0), (-1.02, 100.0)) == "no clear change"
    assert verdict((-1.0, 0.0), (-3.0, 100.0)) == "no interval: a baseline mean of zero"
