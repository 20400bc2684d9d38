"""The run spec (config/spec.py): one parse per process, the CLI's check and the training process's
the same function, only bad input is exit 2, and a bug in the model is a FAILED run with its traceback."""

from mlflow.tracking import MlflowClient

from balance_lab.config.compose import compose_config
from balance_lab.config.validation import STRATEGIES, check_config
from tests.helpers.runners import cli_in_this_process, run_in_this_process
from tests.helpers.short import SHORT_RUN
from tests.helpers.stores import all_runs


def test_the_spec_holds_what_build_needs():
    spec = check_config(compose_config(["balance=aux_loss", "trainer.max_steps=7"]))
    assert spec.model.n_routed_experts == spec.cfg.model.n_routed_experts and spec.balance["alpha"] == 1e-3
    assert spec.trainer["max_steps"] == 7 and spec.trainer["use_distributed_sampler"] is False
    assert spec.source.domain_weights == {"code": 0.4, "prose": 0.4, "math": 0.2}


def test_the_strategy_list_is_lightnings():
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}


def test_a_bad_strategy_is_exit_2_at_the_cli_before_any_process_starts(store, monkeypatch):
    import os

    def no_process(*args):
        raise AssertionError("a training process was started")

    monkeypatch.setattr(os, "execv", no_process)
    result = cli_in_this_process("run", "trainer=ddp", "trainer.strategy=dpp")
    assert result.returncode == 2
    assert result.stderr.startswith("error: trainer.strategy='dpp': choose one of auto, ddp, ")
    assert result.stderr.count("\n") == 1 and all_runs(store) == []


def test_the_config_is_parsed_once_by_the_cli_and_once_by_the_training_process(store, monkeypatch):
    from balance_lab.model import args

    parses = []
    original = args.ModelArgs.from_config.__func__
    monkeypatch.setattr(args.ModelArgs, "from_config", classmethod(lambda cls, c: parses.append(1) or original(cls, c)))
    result = run_in_this_process("balance=none", "trainer.max_steps=2", *SHORT_RUN[1:])
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(parses) == 2  # `balance-lab run`'s check, then the training entry point's (another process there)


def test_an_exception_inside_the_model_is_a_failed_run_with_its_traceback(store, monkeypatch, tmp_path):
    from balance_lab.model import lm

    def broken(self, *args, **kwargs):
        raise TypeError("a bug in the model, not bad input")

    monkeypatch.setattr(lm.MoELM, "__init__", broken)
    result = run_in_this_process("balance=none", *SHORT_RUN)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "TypeError: a bug in the model" in result.stderr
    (run,) = all_runs(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["balance_lab.status_reason"] == "TypeError: a bug in the model, not bad input"
    path = MlflowClient(store).download_artifacts(run.info.run_id, "error/traceback.txt", str(tmp_path))
    text = open(path).read()
    assert "Traceback" in text and "in broken" in text and "a bug in the model" in text
