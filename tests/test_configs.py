"""Every config file composes and builds (model on the meta device, balancer validated)."""

import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from balance_lab.balancing import build_balancer
from balance_lab.model import ModelArgs, MoELM, count_params
from balance_lab.paths import conf_dir

OPTIONS = [(group.name, f.stem) for group in sorted(conf_dir().iterdir()) if group.is_dir() for f in sorted(group.glob("*.yaml"))]


def composed(*overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option):
    cfg = composed(f"{group}={option}")
    assert OmegaConf.select(cfg, group) is not None
    args = ModelArgs.from_config(cfg.model)
    balance = OmegaConf.to_container(cfg.balance, resolve=True)
    with torch.device("meta"):
        model = MoELM(args, make_balancer=lambda: build_balancer(balance, args.n_routed_experts))
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
    assert (v3.update_rate, v3.alpha, v3.scope) == (1e-3, 1e-4, "sequence")


def test_cli_module_imports_no_heavy_framework():
    """`balance-lab --help` stays instant: the CLI module must not import torch, lightning or mlflow."""
    code = "import sys, balance_lab.cli; print(sorted(m for m in ('torch', 'lightning', 'mlflow', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
