"""Every check a composed config must pass before anything is trained or recorded.

Run by `balance-lab run` and `balance-lab sweep` in the CLI (so a typo costs a fraction of a
second and leaves no MLflow run), and again by the training process before it opens its run.
Each failure is a ConfigError whose one-line message names the key, the bad value and what
would be valid. Nothing here reads the data or allocates the model.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from balance_lab.config.known_keys import check_known_keys
from balance_lab.errors import ConfigError

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
# Lightning 2's precision strings (the short legacy forms included)
PRECISIONS = (
    "64-true",
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
    "64",
    "32",
    "16",
    "bf16",
)
# Lightning 2's registered strategies (tests/test_configs.py holds this list to Lightning's registry)
STRATEGIES = (
    "auto",
    "ddp",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_fork",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "ddp_spawn",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_tpu",
    "single_xla",
    "xla",
    "xla_debug",
)


def number(
    cfg: DictConfig,
    key: str,
    kind: type = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_null: bool = False,
) -> Any:
    """cfg[key] as `kind`, within [low, high] ((low, high] with low_open), or a ConfigError naming it."""
    value = OmegaConf.select(cfg, key)
    if value is None and allow_null:
        return None
    what = "an integer" if kind is int else "a number"
    bounds = ""
    if low is not None:
        bounds += f" {'>' if low_open else '>='} {low}"
    if high is not None:
        bounds += f"{' and' if bounds else ''} <= {high}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{key}={value!r}: must be {what}{bounds}")
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ConfigError(f"{key}={value}: must be{bounds}")
    return value


def choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if str(value) not in choices:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(choices)}")
    return str(value)


def check_trainer(cfg: DictConfig) -> dict:
    """The trainer's values; returns Lightning Trainer arguments (spec.py: trainer_arguments)."""
    from balance_lab.config.spec import trainer_arguments

    number(cfg, "trainer.max_steps", int, low=1)
    number(cfg, "trainer.accumulate_grad_batches", int, low=1)
    number(cfg, "trainer.val_check_interval", int, low=1)
    number(cfg, "trainer.log_every_n_steps", int, low=1)
    number(cfg, "trainer.num_nodes", int, low=1, allow_null=True)  # absent: Lightning's default, 1
    number(cfg, "trainer.gradient_clip_val", low=0, allow_null=True)
    choice(cfg, "trainer.accelerator", ACCELERATORS)
    choice(cfg, "trainer.precision", PRECISIONS)
    devices = cfg.trainer.devices
    if not (
        devices == "auto" or (isinstance(devices, int) and (devices >= 1 or devices == -1)) or isinstance(devices, list)
    ):
        raise ConfigError(
            f"trainer.devices={devices!r}: must be a count >= 1, -1 (all), 'auto' or a list of device ids"
        )
    if isinstance(cfg.trainer.get("strategy"), str):  # absent: Lightning's "auto"; an object is Lightning's to check
        choice(cfg, "trainer.strategy", STRATEGIES)
    return trainer_arguments(cfg.trainer)


def check_model_and_balance(cfg: DictConfig):
    """The model's and balancing's values; returns (ModelArgs, RoutingArgs, the balance knobs as a dict)."""
    from balance_lab.balancing.knobs import check_balance
    from balance_lab.model.args import ModelArgs, RoutingArgs

    for key in (
        "vocab_size",
        "seq_len",
        "d_model",
        "n_layers",
        "n_heads",
        "n_routed_experts",
        "top_k",
        "expert_hidden",
        "dense_hidden",
    ):
        number(cfg, f"model.{key}", int, low=1)
    number(cfg, "model.n_shared_experts", int, low=0)
    number(cfg, "model.init_std", low=0, low_open=True)
    if not isinstance(cfg.model.get("compile", False), bool):
        from balance_lab.model.compiling import SETTINGS

        choice(cfg, "model.compile", SETTINGS)
    if cfg.model.get("compile_mode") is not None:
        from balance_lab.model.compiling import MODES

        choice(cfg, "model.compile_mode", MODES)
    auto_rate(cfg)
    try:
        args = ModelArgs.from_config(cfg.model)
        balance = OmegaConf.to_container(cfg.balance, resolve=True)
        check_balance(balance)
        routing = RoutingArgs.from_config(balance)
        routing.check(args.n_routed_experts, args.top_k)
    except (ValueError, TypeError) as exc:  # the arguments' own checks (a value, not a bug: nothing runs yet)
        raise ConfigError(str(exc)) from exc
    return args, routing, balance


def auto_rate(cfg: DictConfig) -> str | None:
    """balance.update_rate=auto: the loss-free u for the run's horizon (config/resolvers.py:
    horizon_rate, docs/laptop-scale.md), written into the config (so the param and the config hash
    hold the number) and said in one line, returned; None where u is a number."""
    from balance_lab.config.resolvers import horizon_rate

    if str(cfg.balance.get("update_rate")) != "auto":
        return None
    steps = number(cfg, "trainer.max_steps", int, low=1)
    rate = horizon_rate(steps)
    with open_dict(cfg):
        cfg.balance.update_rate = rate
        cfg.balance_update_rate_auto = True  # the note survives a second check in the same process
    return auto_note(cfg)


def auto_note(cfg: DictConfig) -> str | None:
    if not cfg.get("balance_update_rate_auto"):
        return None
    return (
        f"balance.update_rate=auto: u = {cfg.balance.update_rate:g} for trainer.max_steps={cfg.trainer.max_steps} "
        "(3 / max_steps within [1e-3, 1e-2]; docs/laptop-scale.md)"
    )


def check_optim(cfg: DictConfig) -> None:
    number(cfg, "optim.lr", low=0, low_open=True)
    number(cfg, "optim.weight_decay", low=0)
    number(cfg, "optim.warmup_steps", int, low=0)
    number(cfg, "optim.min_lr_ratio", low=0, high=1)
    betas = cfg.optim.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"optim.betas={list(betas)}: must be two numbers in [0, 1)")


def check_data(cfg: DictConfig):
    """The data config's values and its source's; returns the source (data/sources/)."""
    from balance_lab.data.sources import source_for

    number(cfg, "data.batch_size", int, low=1)
    number(cfg, "data.val_sequences", int, low=1)
    number(cfg, "data.order_seed", int, low=0, allow_null=True)
    number(cfg, "data.val_fraction", low=0, high=1, low_open=True)
    source = source_for(cfg.data)
    source.check()
    needed = source.vocab_size
    if needed == 256 and cfg.model.vocab_size != 256:  # rows no byte uses would double tiny's compute
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size}: {source.tokenizer_text} reads 256 byte values; "
            "add model.vocab_size=256"
        )
    if cfg.model.vocab_size < needed:
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size}: {source.tokenizer_text} has {needed} tokens; "
            f"add model.vocab_size={needed}"
        )
    return source


def check_run(cfg: DictConfig) -> None:
    number(cfg, "seed", int, low=0)
    number(cfg, "threads", int, low=1, allow_null=True)
    number(cfg, "checkpoint.every_n_steps", int, low=0)


def check_config(cfg: DictConfig):
    """Everything that can be checked without data or memory; returns the run spec (config/spec.py),
    valid once built. The CLI (run, sweep) and the training process call this same function."""
    from balance_lab.config.spec import RunSpec

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required: set it on the command line ({missing[0]}=...)")
    trainer, (model, routing, balance) = check_without_data(cfg)
    source = check_data(cfg)
    return RunSpec(cfg, model, routing, balance, source, trainer, check_diagnostics(cfg))


def check_without_data(cfg: DictConfig):
    """Every check that needs no data source (`configs show` of a preset whose data is elsewhere);
    returns (the Trainer arguments, check_model_and_balance's triple)."""
    check_known_keys(cfg)
    check_run(cfg)
    trainer = check_trainer(cfg)
    model_and_balance = check_model_and_balance(cfg)
    check_optim(cfg)
    return trainer, model_and_balance


_DIAGNOSTICS_LOWEST = {"load_history_rows": 2, "trace_every": 0, "trace_tokens": 1, "trace_max_rows": 1}


def check_diagnostics(cfg: DictConfig):
    """The block's values (defaults where a config predates it); ConfigError for a bad one."""
    from balance_lab.diagnostics.args import DiagnosticsArgs

    block = cfg.get("diagnostics")
    if block is None:
        return DiagnosticsArgs()
    known = [f.name for f in fields(DiagnosticsArgs)]
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"diagnostics.{unknown[0]}: not a diagnostics field; choose from {', '.join(known)}")
    values = {}
    for name, low in _DIAGNOSTICS_LOWEST.items():
        if name in block:
            values[name] = int(number(cfg, f"diagnostics.{name}", int, low=low))
    if block.get("ep_degrees") is not None:
        values["ep_degrees"] = _degrees(block.ep_degrees, int(cfg.model.n_routed_experts))
    if "load_history" in block:
        if not isinstance(block.load_history, bool):
            raise ConfigError(f"diagnostics.load_history={block.load_history!r}: must be true or false")
        values["load_history"] = block.load_history
    return DiagnosticsArgs(**values)


def _degrees(value, n_experts: int) -> tuple[int, ...]:
    """Expert-parallel degrees: positive integers that divide the number of routed experts."""
    from omegaconf import ListConfig

    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or v < 1 or n_experts % v]
    if bad or not items:
        divisors = ", ".join(str(p) for p in range(1, n_experts + 1) if n_experts % p == 0)
        raise ConfigError(
            f"diagnostics.ep_degrees={bad[0] if bad else '[]'!r}: each must divide model.n_routed_experts="
            f"{n_experts} ({divisors})"
        )
    return tuple(sorted(set(items)))
