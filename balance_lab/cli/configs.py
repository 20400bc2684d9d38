"""`balance-lab configs show|list`: the composed config and the config groups."""

from __future__ import annotations

from typing import List, Optional

from balance_lab.cli.app import PASSTHROUGH, OverridesArg, compose, configs_app, fail


@configs_app.command("show", context_settings=PASSTHROUGH)
def configs_show(overrides: Optional[List[str]] = OverridesArg) -> None:
    """Print the composed config, the model's total and active parameter counts and its training
    FLOPs per token (6 x active matmul parameters + attention), computed on the meta device.

        balance-lab configs show model=paper_1b
        balance-lab configs show experiment=paper_3b
    """
    from omegaconf import OmegaConf
    from rich.syntax import Syntax
    from rich.table import Table

    from balance_lab.config.validation import check_without_data
    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError

    cfg = compose(list(overrides or []))
    try:
        _, (args, _, _) = check_without_data(cfg)  # the data is checked where a run reads it
    except ConfigError as exc:
        fail(str(exc))
    console = make_console()
    console.print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", background_color="default"))

    from balance_lab.model import count_params, train_flops_per_token

    counts = count_params(args)  # on the meta device: paper_3b costs no memory
    table = Table(title=f"model={cfg.model.name}", header_style="bold")
    for column in ("parameters", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    table.add_row("total", f"{counts.total:,}")
    table.add_row("active per token", f"{counts.active:,}")
    table.add_row("embedding (tied)" if args.tie_embeddings else "embedding", f"{counts.embedding:,}")
    table.add_row(
        "MoE layers x routed experts",
        f"{args.n_moe_layers} x {args.n_routed_experts} (top-{args.top_k}, {args.n_shared_experts} shared)",
    )
    table.add_row("training FLOPs per token", f"{train_flops_per_token(args, counts):,}")
    console.print(table)


@configs_app.command("list")
def configs_list() -> None:
    """List every config group and its options."""
    from rich.table import Table

    from balance_lab.config.paths import conf_dir
    from balance_lab.console import console as make_console

    table = Table(header_style="bold")
    table.add_column("group")
    table.add_column("options")
    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir()):
        table.add_row(group.name, ", ".join(sorted(f.stem for f in group.glob("*.yaml"))))
    make_console().print(table)
