"""Every config file composes and builds (model on the meta device, balancer validated)."""

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from balance_lab.balancing import build_balancer
from balance_lab.config.compose import compose_config
from balance_lab.config.paths import conf_dir
from balance_lab.model import ModelArgs, MoELM, count_params

OPTIONS = [
    (group.name, f.stem)
    for group in sorted(conf_dir().iterdir())
    if group.is_dir()
    for f in sorted(group.glob("*.yaml"))
]


def composed(*overrides):
    """As every entry point composes: with balance-lab's resolvers (${horizon_rate:...}) registered."""
    return compose_config(list(overrides))


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option):
    cfg = composed(f"{group}={option}")
    # an experiment is a `# @package _global_` setup: it shows in the groups it overrides
    assert OmegaConf.select(cfg, group) is not None or (group == "experiment" and cfg.model.name == option)
    if group != "experiment" and "name" in cfg[group]:  # model, balance, data: the option chosen is the one composed
        assert cfg[group].name == option
    args = ModelArgs.from_config(cfg.model)
    balance = OmegaConf.to_container(cfg.balance, resolve=True)
    with torch.device("meta"):
        model = MoELM(
            args,
            make_balancer=lambda: build_balancer(balance, args.n_routed_experts, cfg.trainer.max_steps, args.top_k),
        )
    assert len(model.moe_layers) == args.n_moe_layers
    counts = count_params(args)
    assert 0 < counts.active < counts.total


def test_every_config_field_is_commented():
    """litgpt's rule: every field says what it is, inline or in the comment line above it."""
    missing = []
    for path in sorted(conf_dir().rglob("*.yaml")):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#"), f"{path.name} has no header comment"
        for i, line in enumerate(lines):
            stripped = line.strip()
            if ":" not in stripped or stripped.startswith(("#", "-")) or stripped in ("defaults:",):
                continue
            if stripped.startswith("name:") or "#" in line or lines[i - 1].strip().startswith("#"):
                continue
            missing.append(f"{path.relative_to(conf_dir())}:{i + 1} {stripped}")
    assert not missing, "fields without a comment:\n" + "\n".join(missing)


def test_shortcuts_set_what_their_names_say():
    assert composed("balance=seq_aux_loss").balance.scope == "sequence"
    assert composed("balance=global_aux_loss").balance.scope == "global"
    assert composed("balance=loss_free_raw").balance.rule == "raw"
    assert composed("balance=loss_free_mult").balance.bias == "multiplicative"
    v3 = composed("balance=loss_free_seq_aux").balance
    assert (v3.update_rate, v3.alpha, v3.scope) == (1e-2, 1e-4, "sequence")  # u for 300 steps


def test_cli_module_imports_no_heavy_framework():
    """`balance-lab --help` stays instant: the CLI module must not import torch, lightning or mlflow."""
    code = (
        "import sys, balance_lab.cli; "
        "print(sorted(m for m in ('torch', 'lightning', 'mlflow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_checks_every_value_before_the_training_process_without_torch(tmp_path):
    """`balance-lab run` composes and checks in its own process, then execs the training process,
    which imports torch and Lightning once: the check must not import them too (~3 s per run)."""
    code = (
        "import sys; from balance_lab.cli.app import check, compose; check(compose(['model=tiny'])); "
        "print(sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


# preset -> (total, active) parameters, within 5%: the paper's names say ~1B and ~3B total
PRESET_SIZES = {
    "tiny": (4.0e6, 2.25e6),
    "small": (21.2e6, 8.4e6),
    "base": (115e6, 61e6),
    "paper_1b": (1.05e9, 0.234e9),
    "paper_3b": (3.05e9, 0.539e9),
}


@pytest.mark.parametrize("preset", sorted(PRESET_SIZES))
def test_configs_show_builds_every_preset_on_the_meta_device_with_counts_and_flops(preset):
    from typer.testing import CliRunner

    from balance_lab.cli import app
    from balance_lab.model import train_flops_per_token

    result = CliRunner().invoke(app, ["configs", "show", f"model={preset}"])  # the CLI's code, in this process
    assert result.exit_code == 0, result.stderr
    args = ModelArgs.from_config(composed(f"model={preset}").model)
    counts = count_params(args)
    total, active = PRESET_SIZES[preset]
    assert counts.total == pytest.approx(total, rel=0.05) and counts.active == pytest.approx(active, rel=0.05)
    flops = train_flops_per_token(args, counts)
    assert (
        6 * counts.active_non_embedding
        < flops
        < 6 * counts.active + 12 * args.n_layers * args.d_model * args.seq_len + 1
    )
    for number in (counts.total, counts.active, flops):
        assert f"{number:,}" in result.stdout


def test_the_paper_presets_have_table_5s_shapes():
    for preset, (d_model, heads, moe_layers) in {"paper_1b": (1024, 8, 9), "paper_3b": (1280, 10, 11)}.items():
        args = ModelArgs.from_config(composed(f"model={preset}").model)
        assert (args.d_model, args.n_heads, args.n_moe_layers) == (d_model, heads, moe_layers)
        assert (args.n_shared_experts, args.n_routed_experts, args.top_k) == (2, 64, 6)
        assert (args.seq_len, args.vocab_size, args.init_std, args.n_dense_layers) == (2048, 32000, 0.006, 1)


@pytest.mark.parametrize("experiment, sequences, steps", [("paper_1b", 1152, 40000), ("paper_3b", 1728, 56514)])
def test_the_paper_experiments_reach_the_papers_global_batch(experiment, sequences, steps):
    cfg = composed(f"experiment={experiment}", "data.path=/data/tok")
    t = cfg.trainer
    assert cfg.model.name == experiment and t.strategy == "ddp" and cfg.data.name == "tokens"
    assert t.devices * t.num_nodes * t.accumulate_grad_batches * cfg.data.batch_size == sequences
    assert t.max_steps == steps and cfg.optim.lr == 1e-3 and cfg.optim.warmup_steps == 1000


@pytest.mark.parametrize("steps, rate", [(6, 1e-2), (300, 1e-2), (1000, 3e-3), (3000, 1e-3), (40000, 1e-3)])
def test_the_loss_free_update_rate_follows_the_run_length(steps, rate):
    from balance_lab.config.compose import compose_config

    cfg = compose_config(["balance=loss_free", f"trainer.max_steps={steps}"])
    assert cfg.balance.update_rate == rate
    assert (
        compose_config(["balance=loss_free", "balance.update_rate=5e-4"]).balance.update_rate == 5e-4
    )  # an override wins
