"""The `balance-lab` command line. Kept thin and import-light: `balance-lab --help` is instant;
torch, lightning and mlflow load only inside the command that needs them."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

app = typer.Typer(
    help="Load-balancing ablations of Mixture-of-Experts language models: train, sweep, report, browse.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
configs_app = typer.Typer(help="Inspect the Hydra configs (conf/).", no_args_is_help=True)
app.add_typer(configs_app, name="configs")

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
OverridesArg = typer.Argument(None, help="Hydra overrides, e.g. model=tiny balance=aux_loss trainer.max_steps=100 seed=1",
                              show_default=False)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(context_settings=_PASSTHROUGH)
def run(overrides: Optional[List[str]] = OverridesArg) -> None:
    """Train one MoE LM and record it in MLflow.

    Composes conf/config.yaml with the overrides (groups: model, balance, data, trainer, optim,
    logger) and runs `python -m balance_lab.train` with them unchanged. Examples:

      balance-lab run                                    # tiny model, loss-free balancing
      balance-lab run balance=aux_loss balance.alpha=1e-2 seed=1
      balance-lab run balance=loss_free balance.update_rate=1e-2 trainer.max_steps=400
      balance-lab run balance=loss_free balance.alpha=1e-4 balance.scope=sequence   # DeepSeek-V3 style

    The store is MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the working directory.
    """
    overrides = list(overrides or [])
    _compose([o for o in overrides if not o.startswith("-")])  # a typo fails here, in one line, before any import of torch
    argv = [sys.executable, "-m", "balance_lab.train", *overrides]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the training process takes over: signals and exit status are its own


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from balance_lab.paths import conf_dir

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        _fail(one_line(exc))


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line that keeps the valid choices."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc.__cause__ or exc)]
    starts = [i for i, line in enumerate(lines) if line.startswith("Available options")]
    if starts:
        options = []
        for line in lines[starts[0] + 1:]:
            if line.endswith(":") or line.startswith(("Config search path", "provider=")):
                break
            options.append(line)
        return f"{lines[0].rstrip('.')}; choose one of {', '.join(options)}"
    return lines[0]


@configs_app.command("show", context_settings=_PASSTHROUGH)
def configs_show(overrides: Optional[List[str]] = OverridesArg) -> None:
    """Print the composed config and the model's total and active parameter counts."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    cfg = _compose(list(overrides or []))
    console = Console()
    console.print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", background_color="default"))

    from balance_lab.model import ModelArgs, count_params

    try:
        args = ModelArgs.from_config(cfg.model)
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    counts = count_params(args)
    table = Table(title=f"model={cfg.model.name}", header_style="bold")
    for column in ("parameters", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    table.add_row("total", f"{counts.total:,}")
    table.add_row("active per token", f"{counts.active:,}")
    table.add_row("embedding (tied)" if args.tie_embeddings else "embedding", f"{counts.embedding:,}")
    table.add_row("MoE layers x routed experts", f"{args.n_moe_layers} x {args.n_routed_experts} (top-{args.top_k}, {args.n_shared_experts} shared)")
    console.print(table)


@configs_app.command("list")
def configs_list() -> None:
    """List every config group and its options."""
    from rich.console import Console
    from rich.table import Table

    from balance_lab.paths import conf_dir

    table = Table(header_style="bold")
    table.add_column("group")
    table.add_column("options")
    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir()):
        table.add_row(group.name, ", ".join(sorted(f.stem for f in group.glob("*.yaml"))))
    Console().print(table)


if __name__ == "__main__":
    app()
