"""`balance-lab sweep --until-resolved`: the declared seed plan, one parent over every look, what it
records, the report's sequential section, and bad input."""

import json

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.errors import ConfigError
from balance_lab.sweeping import sequential as seq
from balance_lab.sweeping.grid import expand
from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.runners import cli_in_new_process, cli_in_this_process
from tests.helpers.short import SHORT_RUN
from tests.helpers.stores import all_runs, working_in_new_store


def test_the_plan_continues_above_the_largest_seed_and_skips_used_ones():
    grid = expand("paper_main", ["seeds=[5,1,7]"])
    plan = seq.plan_seeds(grid, 8, 2)
    assert plan.seeds == (5, 1, 7, 8, 9, 10, 11, 12) and plan.looks == (3, 5, 7, 8)
    assert plan.batch(0) == (5, 1, 7) and plan.batch(1) == (8, 9) and plan.batch(3) == (12,)
    assert seq.plan_seeds(grid, 3, None).looks == (3,)


def test_a_plan_changed_after_a_look_is_refused_in_one_line(store):
    """An earlier invocation planned looks at 3, 6 seeds for this comparison; the same grid with
    --max-seeds 12 shares its seeds, so it is refused; the same plan, fresh seeds or another grid are not."""
    from balance_lab.sweeping.launch import open_parent

    client = MlflowClient(store)
    grid = expand("paper_main", ["seeds=[0,1,2]"])
    plan = seq.plan_seeds(grid, 6, 3)
    parent = open_parent(client, grid, "balance-lab sweep paper_main seeds=[0,1,2] --until-resolved val/ppl")
    recorded = {"metric": "val/ppl", "baseline": "balance=aux_loss", "seeds": plan.seeds, "looks": plan.looks}
    for key, value in recorded.items():
        client.log_param(parent, f"sequential.{key}", value if isinstance(value, str) else ",".join(map(str, value)))
    seq.check_plan_unchanged(client, grid, "val/ppl", "balance=aux_loss", plan)  # the same plan, continued
    fresh = expand("paper_main", ["seeds=[200,201,202]"])
    seq.check_plan_unchanged(client, fresh, "val/ppl", "balance=aux_loss", seq.plan_seeds(fresh, 12, 3))
    small = expand("paper_main", ["seeds=[0,1,2]", "model=small"])
    seq.check_plan_unchanged(client, small, "val/ppl", "balance=aux_loss", seq.plan_seeds(small, 12, 3))
    with pytest.raises(ConfigError, match="planned this comparison with looks at 3,6 seeds"):
        seq.check_plan_unchanged(client, grid, "val/ppl", "balance=aux_loss", seq.plan_seeds(grid, 12, 3))
    result = cli_in_this_process("sweep", "paper_main", "seeds=[0,1,2]", "--until-resolved", "val/ppl")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "looks at 3,6 seeds (seeds 0,1,2,3,4,5), this command at 3,6,9,12" in result.stderr
    assert len(all_runs(store)) == 1  # nothing recorded but the earlier parent


def test_a_failed_run_leaves_its_look_incomplete_and_later_looks_unanalysed():
    plan = seq.SeedPlan((0, 1, 2, 3), (2, 3, 4))
    labels = ["a", "b"]
    values = {(lbl, s): float(s) + (lbl == "b") for lbl in labels for s in (0, 1, 2, 3)}
    del values[("b", 2)]
    pairs, missing = seq.pair_outcomes(values, labels, plan, 2, "a", [99.0, 99.0, 99.0])
    assert missing == ["b seed 2"]
    assert [look.seeds for look in pairs["b"].looks] == [2]  # look 2 lacks seed 2, so look 3 is not analysed


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--until-resolved", "val/pplx"],
            "--until-resolved 'val/pplx': not a metric a run ends with; choose one of val/ppl",
        ),
        (
            ["--until-resolved", "val/ppl", "--baseline", "nope"],
            "--baseline 'nope' matches 0 configurations; choose one of balance=aux_loss; balance=loss_free",
        ),
        (["--until-resolved", "val/ppl", "--max-seeds", "2"], "--max-seeds 2 is below the first batch's 3 seeds"),
        (["seeds=[4]", "--until-resolved", "val/ppl"], "needs at least 2 seeds in the first batch, not [4]"),
        (["--step", "2"], "--step and --baseline go with --until-resolved METRIC"),
    ],
)
def test_bad_sequential_options_fail_in_one_line_and_record_nothing(store, args, message):
    result = cli_in_this_process("sweep", "paper_main", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert all_runs(store) == []


def test_a_grid_of_one_configuration_is_refused():
    with pytest.raises(ConfigError, match="compares configurations"):
        seq.choose_baseline(expand("paper_main", ["balance=loss_free"]), None)


@pytest.mark.slow
@SWEPT_GROUP
def test_a_sequential_sweep_reuses_finished_seeds_adds_the_next_and_records_every_look(swept, corpus_cache, tmp_path):
    """On a copy of the session's sweep (paper_main, seeds 0 and 1 finished): look 1 (seeds 0, 1) is
    all skipped, look 2 trains seed 2 for both methods under the same parent; the parent records the
    plan, each look and why it stopped; the report prints the sequential interval."""
    with working_in_new_store(tmp_path, swept.root / "mlflow.db", corpus_cache) as uri:
        result = cli_in_new_process(
            "sweep",
            "paper_main",
            "seeds=[0,1]",
            *SHORT_RUN,
            "--until-resolved",
            "val/ppl",
            "--max-seeds",
            "3",
            "--step",
            "1",
            "--jobs",
            "2",
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        report = cli_in_this_process("report", "paper_main", "--format", "md", "--no-write")
        # a metric the runs never record (no such domain): the first look (all finished) says so and stops
        lacking = cli_in_this_process(
            "sweep", "paper_main", "seeds=[0,1]", *SHORT_RUN, "--until-resolved", "val/top_expert_freq/poetry"
        )
    assert report.returncode == 0, report.stderr[-3000:]
    assert lacking.returncode == 1, lacking.stdout[-2000:] + lacking.stderr[-2000:]
    assert "4 runs finished without recording val/top_expert_freq/poetry" in " ".join(lacking.stdout.split())
    out = " ".join(result.stdout.split())
    assert "looks at 2, 3 seeds (seeds 0..2, declared now)" in out and "after look 2: val/ppl" in out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("paper_main")
    parents = client.search_runs([experiment.experiment_id], filter_string="params.`sequential.metric` = 'val/ppl'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["sequential.seeds"] == "0,1,2" and parent.data.params["sequential.looks"] == "2,3"
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(c.data.params["seed"] for c in children) == ["2", "2"]  # seeds 0 and 1 were finished before
    assert all(c.info.status == "FINISHED" for c in children)
    record = json.loads(
        client.download_artifacts(parent.info.run_id, "sequential.json", str(tmp_path))
        and (tmp_path / "sequential.json").read_text()
    )
    looks = record["pairs"]["balance=loss_free"]["looks"]
    assert [look["seeds"] for look in looks] == [2, 3] and record["stopped"] == parent.data.tags[
        "balance_lab.sequential"
    ]
    assert record["stopped"].startswith(("every pair resolved", "the seed budget is spent"))
    # the report recomputes the same last interval from the runs
    low, high = looks[-1]["low"], looks[-1]["high"]
    assert "## Sequential comparison (until resolved: val/ppl against aux_loss-a1e-3-micro" in report.stdout
    assert f"[{low:+.4f}, {high:+.4f}]" in report.stdout
    # its verdicts come before the fixed-n table, whose verdict for the same pair defers to them
    assert report.stdout.index("## Sequential comparison") < report.stdout.index("## Paired comparison")
    assert "(fixed n: see the sequential interval)" in report.stdout
    assert not [r for r in all_runs(uri) if r.info.status == "RUNNING"]
