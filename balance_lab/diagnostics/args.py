"""The `diagnostics` config block: what a run records, not what it trains (outside the config hash);
config/validation.py checks it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiagnosticsArgs:
    load_history: bool = True  # every optimizer step's tokens per layer and expert: loads/steps.parquet
    load_history_rows: int = 2048  # rows per layer kept; past it adjacent rows merge pairwise
    trace_every: int = 0  # routing trace of every N-th optimizer step (0: off)
    trace_tokens: int = 1024  # tokens traced per sampled step and per validation
    trace_max_rows: int = 2_000_000  # the trace stops growing here (one row = token x layer x chosen expert)
    ep_degrees: tuple[int, ...] | None = None  # straggler factors logged for these EP degrees (None: powers of two)
