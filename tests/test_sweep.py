"""`balance-lab sweep`: grids, the MLflow layout, failures, re-runs, launchers."""

import json

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.config.compose import compose_config
from balance_lab.sweeping.grid import available_sweeps, expand, sweep_overrides
from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.runners import cli_in_new_process, cli_in_this_process
from tests.helpers.short import CONTRACT_METRICS, SHORT_RUN, short_run
from tests.helpers.stores import all_runs, working_in_new_store

SHORT = short_run(steps=None, val_every=2)  # the steps are swept in one test
EXPECTED_SIZES = {
    "paper_main": 6,
    "update_rate": 12,
    "update_rule": 6,
    "bias_type": 6,
    "aux_alpha": 12,
    "lbl_scope": 9,
    "gating": 12,
    "methods": 36,
    "seed_noise": 6,
    "capacity": 36,
    "methods_2026": 21,
}


def test_every_contracted_sweep_exists_expands_and_validates():
    """Every point of every sweep composes and validates, with unique names and configs. Seeds only
    multiply the grid: each sweep is expanded for seed 0 (a third of the compositions), after one
    full expansion shows the default seeds."""
    from omegaconf import OmegaConf

    from balance_lab.config.paths import sweeps_dir

    assert set(EXPECTED_SIZES) <= set(available_sweeps())
    assert expand("paper_main", []).dimensions["seed"] == ["0", "1", "2"]
    for name, size in EXPECTED_SIZES.items():
        assert list(OmegaConf.load(sweeps_dir() / f"{name}.yaml").seeds) == [0, 1, 2], name
        grid = expand(name, ["seeds=[0]"])
        assert len(grid.points) == size // 3, name
        assert "seed" in grid.swept_keys and grid.dimensions["seed"] == ["0"]
        assert len({p.run_name for p in grid.points}) == size // 3, f"{name}: run names are not unique"
        assert len({p.config_hash for p in grid.points}) == size // 3, f"{name}: two points train the same config"


def test_the_demo_compares_three_methods_on_one_seed_in_a_short_run():
    grid = expand("demo", [])
    assert grid.dimensions == {"balance": ["none", "aux_loss", "loss_free"], "seed": ["0"]}
    cfg = compose_config([*sweep_overrides("demo"), "balance=loss_free"])
    assert (cfg.trainer.max_steps, cfg.data.batch_size, cfg.balance.update_rate) == (120, 8, 1e-2)


def test_seeds_and_model_are_overridable_and_plain_overrides_pin_a_dimension():
    grid = expand("update_rate", ["model=small", "seeds=[0,1]"])
    assert len(grid.points) == 8 and grid.dimensions["seed"] == ["0", "1"]
    assert all("small" in p.run_name for p in grid.points)
    pinned = expand("paper_main", ["balance=loss_free", "balance.update_rate=1e-3,1e-2"])
    assert pinned.dimensions["balance"] == ["loss_free"] and len(pinned.points) == 2 * 3
    # the seed list is not part of what a run trains: seed 0 of a 1-seed sweep is seed 0 of a 3-seed one
    one_seed = {p.config_hash for p in expand("paper_main", ["seeds=[0]"]).points}
    assert one_seed <= {p.config_hash for p in expand("paper_main", []).points}


def test_unknown_sweep_and_bad_point_fail_in_one_line(store):
    result = cli_in_this_process("sweep", "paper_mian")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown sweep 'paper_mian': choose one of "
        "aux_alpha, bias_type, capacity, demo, gating, lbl_scope, methods, methods_2026, paper_main, seed_noise, "
        "update_rate, update_rule"
    )
    result = cli_in_this_process("sweep", "update_rate", "balance.update_rate=-1,1e-3")
    assert result.returncode == 2 and "balance.update_rate=-1" in result.stderr and "must be >= 0" in result.stderr
    assert all_runs(store) == []


def test_an_unknown_launcher_fails_before_anything_is_recorded(store):
    result = cli_in_this_process("sweep", "paper_main", "hydra/launcher=slurm")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown launcher hydra/launcher=slurm; choose one of basic, joblib, submitit_local, submitit_slurm"
    )
    assert all_runs(store) == []


def test_dry_run_prints_the_grid_and_records_nothing(store, tmp_path):
    before = (tmp_path / "mlflow.db").read_bytes()
    result = cli_in_this_process("sweep", "gating", "seeds=[0]", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "sweep gating: 4 runs" in result.stdout and "softmax" in result.stdout
    assert (tmp_path / "mlflow.db").read_bytes() == before and not (tmp_path / "multirun").exists()


def children_of(client, parent_id, experiment_id):
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.mark.slow
@SWEPT_GROUP
def test_four_runs_two_at_a_time_nest_under_one_parent_and_rerun_skips_them(swept, corpus_cache, tmp_path):
    """The session's sweep (paper_main, seeds [0,1], --jobs 2; conftest.swept), then the same command
    again on a copy of its store: everything already finished is skipped."""
    client = MlflowClient(swept.uri)
    experiment = client.get_experiment_by_name("paper_main")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("balance_lab.role") == "sweep_parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = children_of(client, parents[0].info.run_id, experiment.experiment_id)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert not [r for r in all_runs(swept.uri) if r.info.status == "RUNNING"]
    for child in children:
        assert child.data.tags["balance_lab.sweep"] == "paper_main"
        assert child.data.tags["sweep.balance"] == child.data.params["balance.name"]
        assert child.data.tags["sweep.seed"] == child.data.params["seed"]
        assert set(CONTRACT_METRICS) <= set(child.data.metrics), child.info.run_name
    with open(client.download_artifacts(parents[0].info.run_id, "grid.json", str(tmp_path))) as f:
        grid = json.load(f)
    assert grid["dimensions"] == {"balance": ["aux_loss", "loss_free"], "seed": ["0", "1"]}
    assert "4 finished, 0 failed, 0 skipped" in " ".join(swept.sweep.stdout.split())

    # the same command again, on a copy: the shared store stays as it was
    with working_in_new_store(tmp_path, swept.root / "mlflow.db", corpus_cache) as copy:
        again = cli_in_new_process("sweep", "paper_main", "seeds=[0,1]", *SHORT_RUN, "--jobs", "2")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 finished, 0 failed, 4 skipped" in " ".join(again.stdout.split())
    copied = MlflowClient(copy)
    # the 4 children, the failing run beside them, two parents: no new child
    assert len(copied.search_runs([experiment.experiment_id])) == len(runs) + 1 == 4 + 1 + 2


@pytest.mark.slow
def test_a_failing_run_is_marked_failed_the_others_finish_and_the_exit_is_non_zero(store):
    # fail_after_steps=7 only fires in the run that reaches step 7, the second of three
    result = cli_in_new_process(
        "sweep", "paper_main", "balance=loss_free", "seeds=[0]", "trainer.max_steps=4,7,5", "fail_after_steps=7", *SHORT
    )
    assert result.returncode == 1
    runs = [r for r in all_runs(store) if r.data.tags.get("balance_lab.role") != "sweep_parent"]
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert failed.data.params["trainer.max_steps"] == "7"
    assert "fail_after_steps=7 reached" in failed.data.tags["balance_lab.status_reason"]
    assert "2 finished, 1 failed, 0 skipped" in " ".join(result.stdout.split())


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_grid(store):
    # one point: each submitit job is a process of its own (its imports cost more than its 3 steps)
    result = cli_in_new_process(
        "sweep",
        "paper_main",
        "seeds=[0]",
        "balance=loss_free",
        "trainer.max_steps=3",
        *SHORT,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [r for r in all_runs(store) if r.data.tags.get("balance_lab.role") != "sweep_parent"]
    assert [r.data.params["balance.name"] for r in runs] == ["loss_free"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "1 finished, 0 failed, 0 skipped" in " ".join(result.stdout.split())
