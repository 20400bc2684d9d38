"""Bad input: one clear line naming the bad key or value (and what would be valid), exit status 2,
and no MLflow run created. The cases run the CLI's own code in this process (its checks come before
the exec); a few go through the real console script and a real training process, as a user's do."""

import functools
import os

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.runners import cli_in_new_process, cli_in_this_process, run_in_this_process
from tests.helpers.stores import all_runs


def no_run_recorded(store: str) -> bool:
    """No store was created (checked without creating one: that alone costs a second), or it holds no run."""
    return not os.path.exists(store[len("sqlite:///") :]) or all_runs(store) == []


# (arguments of `balance-lab run`, fragments the one-line error must contain)
BAD_RUNS = [
    (["model=huge"], ["model/huge", "small, tiny"]),
    (["balance=loss_fre"], ["loss_fre", "loss_free"]),
    (["trainer.max_stpes=5"], ["unknown key trainer.max_stpes", "did you mean trainer.max_steps"]),
    (["foo=1"], ["unknown key foo", "balance"]),
    (["trainer.max_steps=abc"], ["trainer.max_steps='abc'", "integer >= 1"]),
    (["trainer.max_steps=0"], ["trainer.max_steps=0", ">= 1"]),
    (["balance.update_rate=0"], ["balance.update_rate=0", "u > 0"]),
    (["balance.update_rate=-1e-3"], ["balance.update_rate=-0.001", ">= 0"]),
    (["balance.rule=sgn"], ["balance.rule='sgn'", "sign, raw"]),
    (["balance.bias=additiv"], ["balance.bias='additiv'", "additive, multiplicative"]),
    (["balance=aux_loss", "balance.scope=globl"], ["balance.scope='globl'", "micro, sequence, global"]),
    (["balance=aux_loss", "balance.alpha=-0.1"], ["balance.alpha=-0.1", ">= 0"]),
    (["balance.alpah=1"], ["unknown key balance.alpah", "did you mean balance.alpha"]),
    (["balance.capacity_factor=0"], ["balance.capacity_factor=0", "> 0, or null for no dropping"]),
    (["balance.drop_policy=random"], ["balance.drop_policy='random'", "probs, position"]),
    (
        ["balance=sinkhorn", "balance.update_rate=1e-3"],
        ["balance.update_rate=0.001", "balance.sinkhorn_iters=100", "set balance.update_rate=0"],
    ),
    (["balance.n_groups=3"], ["balance.n_groups=3", "must divide model.n_routed_experts=16"]),
    (["balance.momentum=1"], ["balance.momentum=1", "must be below 1"]),
    (["balance.bias_cap=0"], ["balance.bias_cap=0", "> 0, or null for no cap"]),
    (["balance.warmup_steps=-1"], ["balance.warmup_steps=-1", ">= 0"]),
    (["balance.schedule=cosin"], ["balance.schedule='cosin'", "constant, cosine, linear, off_after"]),
    (["balance.schedule_end=1.5"], ["balance.schedule_end=1.5", "at most 1"]),
    (["balance=aux_loss", "balance.orthogonality=-1"], ["balance.orthogonality=-1", ">= 0"]),
    (
        ["balance=forced", "balance.update_rate=1e-3"],
        ["balance.update_rate=0.001", "force_balance=true", "set balance.update_rate=0"],
    ),
    (["balance.update_rate=fast"], ["balance.update_rate='fast'", "a number >= 0"]),
    (
        ["balance=quantile", "balance.alpha=1e-3"],
        ["balance.alpha=0.001", "quantile_balancing=true", "set balance.alpha=0"],
    ),
    (["balance=quantile", "balance.quantile_ema=1"], ["balance.quantile_ema=1", "must be below 1"]),
    (["balance=quantile", "balance.quantile_space=probs"], ["balance.quantile_space='probs'", "logits, scores"]),
    (["model.top_k=17"], ["model.top_k=17", "model.n_routed_experts=16"]),
    (["model.score_func=relu"], ["model.score_func='relu'", "sigmoid, softmax"]),
    (["model.compile=maybe"], ["model.compile='maybe'", "auto, true, false"]),
    (["model.compile_mode=fast"], ["model.compile_mode='fast'", "default, reduce-overhead, max-autotune"]),
    (["model.n_heads=3"], ["model.d_model=128", "model.n_heads=3"]),
    (["model.n_routed_experts=0"], ["model.n_routed_experts=0", ">= 1"]),
    (["optim.lr=0"], ["optim.lr=0", "> 0"]),
    (["optim.betas=[0.9]"], ["optim.betas=[0.9]", "two numbers"]),
    (["trainer.precision=fp8"], ["trainer.precision='fp8'", "bf16-mixed"]),
    (["trainer.accelerator=tpuu"], ["trainer.accelerator='tpuu'", "cpu, gpu"]),
    (["trainer.devices=0"], ["trainer.devices=0", "'auto'"]),
    (["data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    (["+data.domains.poetry=1.0"], ["unknown domain(s) poetry", "code, prose, math"]),
    (["data.domains.math=-1"], ["data.domains=", "> 0"]),
    (["data.tokenizer=wordpiece"], ["data.tokenizer='wordpiece'", "bpe, bytes"]),
    (["data.tokenizer=bytes"], ["model.vocab_size=8192", "reads 256 byte values", "add model.vocab_size=256"]),
    (["data.tokenizer=bpe", "model.vocab_size=256"], ["data.vocab_size=256", "257 to", "model.vocab_size"]),
    (["data=text_dir"], ["data.path is required"]),
    (["data=text_dir", "data.path=/nonexistent/corpus"], ["data.path='/nonexistent/corpus'", "no such folder"]),
    (["data=text_dir", "data.path={empty}"], ["empty corpus"]),
    (["seed=-1"], ["seed=-1", ">= 0"]),
    (["data.order_seed=x"], ["data.order_seed='x'", "an integer >= 0"]),
    (["threads=0"], ["threads=0", ">= 1"]),
    (["checkpoint.every_n_steps=-5"], ["checkpoint.every_n_steps=-5", ">= 0"]),
    (["diagnostics.trace_every=-1"], ["diagnostics.trace_every=-1", ">= 0"]),
    (["diagnostics.ep_degrees=[3]"], ["diagnostics.ep_degrees=3", "model.n_routed_experts=16", "1, 2, 4, 8, 16"]),
    (["diagnostics.load_history_rows=1"], ["diagnostics.load_history_rows=1", ">= 2"]),
    (["diagnostics.load_history=maybe"], ["diagnostics.load_history='maybe'", "true or false"]),
    (["+diagnostics.trace=1"], ["diagnostics.trace", "load_history, load_history_rows, trace_every"]),
    (["logger.tracking_uri=http://127.0.0.1:9"], ["http://127.0.0.1:9", "no MLflow server answers"]),
    (["logger.tracking_uri=sqlite:////nonexistent/dir/mlflow.db"], ["/nonexistent/dir", "does not exist"]),
    (["logger.tracking_uri=ftp://host/store"], ["unknown scheme 'ftp'", "sqlite:///PATH"]),
    (
        ["--resume", "0123456789abcdef"],
        ["--resume 0123456789abcdef", "no run '0123456789abcdef' in the store", "no such checkpoint file"],
    ),
    (["--resume", "{empty}/last.ckpt", "seed=1"], ["leave out the overrides"]),
    (["--frobnicate"], ["unknown option '--frobnicate'", "--resume"]),
    (["--resume", ""], ["--resume needs a run id or a checkpoint file"]),  # an unset $RUN_ID: not a fresh run
    # a key Hydra adds with + that nothing would read (the run would train without it)
    (["+model.n_layer=4"], ["model.n_layer: nothing reads this key", "did you mean model.n_layers"]),
    (["+optim.lrr=1e-3"], ["optim.lrr", "did you mean optim.lr?"]),
    (["+data.batchsize=4"], ["data.batchsize", "did you mean data.batch_size"]),
    (["+checkpoint.every_n_stpes=5"], ["checkpoint.every_n_stpes", "dir, every_n_steps, keep_when_finished"]),
    (["+trainer.max_stpes=5"], ["trainer.max_stpes: not an argument of lightning.Trainer", "trainer.max_steps"]),
    (["+seeed=3"], ["seeed: nothing reads this top-level key", "did you mean seed?"]),
    (["logger.tracking_uri=runs.db"], ["'runs.db'", "folder store", "sqlite:///runs.db"]),
    (["notanoverride"], ["'notanoverride'", "an override is key=value"]),
    (["balance.alpha=1e-2,1e-3"], ["balance.alpha=1e-2,1e-3", "a sweep (balance-lab sweep NAME key=a,b)"]),
]


def check_in_process(monkeypatch, *args: str):
    """The CLI's own code in this process (the checks happen before `run` execs the trainer, which
    is made to fail loudly here instead of replacing the test process)."""

    def no_exec(*_):
        raise AssertionError("the input was accepted: balance-lab run went on to start training")

    monkeypatch.setattr(os, "execv", no_exec)
    result = cli_in_this_process(*args)
    return result.returncode, result.stderr


@pytest.mark.parametrize("args, fragments", BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_run_input_is_one_line_exit_2_and_no_run(store, tmp_path, monkeypatch, args, fragments):
    empty = tmp_path / "empty-corpus"
    (empty / "news").mkdir(parents=True)  # a domain folder without a single text file
    code, stderr = check_in_process(monkeypatch, "run", *(a.format(empty=empty) for a in args))
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert no_run_recorded(store)


@pytest.mark.parametrize("args", [["model=huge"], ["trainer.max_stpes=5"], ["logger.tracking_uri=http://127.0.0.1:9"]])
def test_the_real_console_script_gives_the_same_one_line_errors(store, args):
    result = cli_in_new_process("run", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and no_run_recorded(store)


TRAINING_PROCESS_FINDS = [  # (overrides, what stderr says, run as): one through a real training process
    (["model.seq_len=3000000", "trainer.max_steps=2"], "fewer than one sequence of 3000001", run_in_this_process),
    (
        ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"],
        "error: trainer: The strategy `fsdp` requires a GPU accelerator",
        functools.partial(cli_in_new_process, "run"),
    ),
]


@pytest.mark.parametrize("args, fragment, run", TRAINING_PROCESS_FINDS, ids=["seq_len", "fsdp-on-cpu"])
def test_what_needs_the_data_or_lightning_fails_before_the_run_exists(store, args, fragment, run):
    """Found by the training entry point (it reads the data, asks Lightning), still before any MLflow run exists."""
    result = run(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert no_run_recorded(store)


def test_verbose_keeps_the_full_error(store):
    result = cli_in_new_process("--verbose", "run", "model=huge")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and len(result.stderr.strip().splitlines()) > 3
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


BAD_SWEEP_FILES = {
    "broken": (
        "# @package _global_\nhydra:\n  sweeper:\n    params: {balance: [aux_loss\n",
        ["broken.yaml line", "not valid YAML"],
    ),
    "nogrid": ("# @package _global_\nseeds: [0]\n", ["nogrid.yaml", "defines no grid"]),
}


@pytest.mark.parametrize("name", sorted(BAD_SWEEP_FILES))
def test_a_malformed_sweep_file_is_one_line_exit_2(store, tmp_path, monkeypatch, name):
    text, fragments = BAD_SWEEP_FILES[name]
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("BALANCE_LAB_SWEEPS_DIR", str(folder))
    result = cli_in_new_process("sweep", name, "--dry-run")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and all(f in line for f in fragments), line
    assert no_run_recorded(store)


def test_a_sweep_file_of_ones_own_runs_dry(store, tmp_path, monkeypatch):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "# @package _global_\nseeds: [0]\nhydra:\n  mode: MULTIRUN\n  sweeper:\n"
        "    params:\n      balance.update_rate: 1e-3,1e-2\n      seed: ${csv:${seeds}}\n"
    )
    monkeypatch.setenv("BALANCE_LAB_SWEEPS_DIR", str(folder))
    result = cli_in_this_process("sweep", "mine", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "sweep mine: 2 runs" in result.stdout


def test_a_sweep_into_an_unreachable_store_fails_before_training(store):
    result = cli_in_this_process("sweep", "paper_main", "--tracking-uri", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: tracking URI 'http://127.0.0.1:9': no MLflow server answers")
    assert not os.path.exists("multirun")


def test_a_lightning_argument_added_with_plus_is_accepted(store):
    """`+trainer.X` for a real lightning.Trainer argument is how its other arguments are reached."""
    from balance_lab.config.compose import compose_config
    from balance_lab.config.validation import check_config

    spec = check_config(compose_config(["+trainer.profiler=simple", "+trainer.detect_anomaly=false"]))
    assert spec.trainer["profiler"] == "simple" and spec.trainer["detect_anomaly"] is False


# (arguments of another command, fragments of its one-line error); each checked before anything is done
BAD_COMMANDS = [
    (["sweep", "paper_main", "seeds=[0,0,1]", "--dry-run"], ["runs 0 and 1 are one configuration", "seed=0"]),
    (["sweep", "paper_main", "seeds=abc", "--dry-run"], ["seeds='abc'", "a list of integers >= 0"]),
    (["sweep", "paper_main", "seeds=[]", "--dry-run"], ["seeds=[]", "a list of integers"]),
    (["sweep", "paper_main", "--bogus"], ["unknown option '--bogus' for sweep"]),
    (["sweep", "paper_main", "--max-seeds", "6", "--dry-run"], ["--max-seeds", "go with --until-resolved"]),
    (["sweep", "paper_main", "hydra/launcher=slurmm", "--dry-run"], ["slurmm", "joblib, submitit_local"]),
    (
        ["sweep", "paper_main", "--until-resolved", "val/maxvio_global/layer_9", "--dry-run"],
        ["val/maxvio_global/layer_9", "val/maxvio_global/layer_1, val/maxvio_global/layer_2"],
    ),
    (["sweep", "paper_main", "--tracking-uri", "runs.db", "--dry-run"], ["folder store", "sqlite:///runs.db"]),
    (["runs", "--dry-run"], ["--dry-run goes with --stale"]),
    (["runs", "--older-than", "5"], ["--older-than goes with --stale"]),
    (["runs", "--stale", "--sync", "x.jsonl"], ["--sync and --stale"]),
    (["runs", "--tracking-uri", "http://127.0.0.1:9"], ["no MLflow server answers"]),  # MLflow would retry silently
    (["report", "--tracking-uri", "http://127.0.0.1:9"], ["no MLflow server answers"]),
    (["data", "tokenize", "{tmp}/out", "--eot", "<nope>"], ["--eot goes with --tokenizer"]),
    (["data", "tokenize", "{tmp}/out", "--tokenizer", "{tmp}/not.json"], ["not a Hugging Face tokenizer.json"]),
    (["configs", "show", "model.n_layers=abc"], ["model.n_layers='abc'", "integer >= 1"]),
    # Click's own usage errors, one line too (Typer draws a box of 5 lines)
    (["sweep", "paper_main", "--jobs", "0"], ["sweep: Invalid value for '--jobs'", "(given: 0)", "sweep --help"]),
    (["report", "--bogus"], ["report: No such option: --bogus"]),
    (["sweep"], ["Missing argument 'name'"]),
]


@pytest.mark.parametrize("args, fragments", BAD_COMMANDS, ids=[" ".join(a) for a, _ in BAD_COMMANDS])
def test_bad_input_to_the_other_commands_is_one_line_exit_2(store, tmp_path, args, fragments):
    (tmp_path / "not.json").write_text("hello")
    result = cli_in_this_process(*(a.format(tmp=tmp_path) for a in args))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == "" and not (tmp_path / "out").exists() and no_run_recorded(store)
    assert not (tmp_path / "multirun").exists()


def test_a_file_that_is_not_an_outbox_is_refused_before_anything_is_sent(store, tmp_path):
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("spilled")).info.run_id
    spilled = tmp_path / "unsent.jsonl"
    spilled.write_text(
        f'{{"run_id": "{run_id}", "key": "train/loss", "value": 1.0, "timestamp": 0, "step": 1}}\n{{"a": 1}}\n'
    )
    result = cli_in_this_process("runs", "--sync", str(spilled))
    assert result.returncode == 2 and "unsent.jsonl line 2: not a record" in result.stderr, result.stderr
    assert client.get_metric_history(run_id, "train/loss") == []  # line 1 was not sent either
