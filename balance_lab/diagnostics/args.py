"""The `diagnostics` config block: what a run records, not what it trains (outside the config hash)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from omegaconf import DictConfig

from balance_lab.errors import ConfigError


@dataclass(frozen=True)
class DiagnosticsArgs:
    load_history: bool = True  # every optimizer step's tokens per layer and expert: loads/steps.parquet
    load_history_rows: int = 2048  # rows per layer kept; past it adjacent rows merge pairwise
    trace_every: int = 0  # routing trace of every N-th optimizer step (0: off)
    trace_tokens: int = 1024  # tokens traced per sampled step and per validation
    trace_max_rows: int = 2_000_000  # the trace stops growing here (one row = token x layer x chosen expert)
    ep_degrees: tuple[int, ...] | None = None  # straggler factors logged for these EP degrees (None: powers of two)


LOWEST = {"load_history_rows": 2, "trace_every": 0, "trace_tokens": 1, "trace_max_rows": 1}


def check_diagnostics(cfg: DictConfig) -> DiagnosticsArgs:
    """The block's values (defaults where a config predates it); ConfigError for a bad one."""
    from balance_lab.config.validation import number

    block = cfg.get("diagnostics")
    if block is None:
        return DiagnosticsArgs()
    known = [f.name for f in fields(DiagnosticsArgs)]
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"diagnostics.{unknown[0]}: not a diagnostics field; choose from {', '.join(known)}")
    values = {}
    for name, low in LOWEST.items():
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
