"""Regional compilation: torch.compile each transformer block (on a GPU by default).

Eager PyTorch launches one kernel per operation: an MoE block is some 70 of them forward (norms,
rotary, routing, counts, dispatch, SwiGLU, gates, combine), most of them small. On a GPU the
CPU then spends longer launching a step than the GPU spends computing it (benchmarks/RESULTS.md:
42.8 ms of kernels in a 64.9 ms step on `base`). Compiling fuses the element-wise work into a few
kernels per block, which both shortens the GPU's work and lets the CPU run ahead of it.

Blocks, not the whole model: every block of a kind shares one compiled graph (parameters are graph
inputs), so a 10-layer model compiles a dense and an MoE block once each; the model's loop,
activation checkpointing and outputs stay plain Python. A whole MoE block is one graph for every
balancing method except the global aux loss, whose recompute check (balancing/base.py) runs
eagerly between two graphs. Shapes are static (dynamic=False): the sort-based dispatch keeps
(T*K, D) rows whatever the routing, so only a new batch shape compiles again.

`model.compile: auto` compiles when the trainer's accelerator is a GPU and leaves the CPU eager:
compiling there costs minutes of a short run and changes no result worth it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the config check (config/validation.py) reads SETTINGS in
# `balance-lab run`'s own process, which hands over to the training process without needing torch.
SETTINGS = ("auto", "true", "false")
# torch.compile's modes (`model.compile_mode`). reduce-overhead records each compiled block as a CUDA
# graph: one replay instead of its kernel launches (351 per step on `base`, ~22 per graph), for a model
# small enough that the host's launching is the bottleneck (`base` on an H200: benchmarks/RESULTS.md).
# On the CPU (eager by default) inductor skips the graphs.
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RECOMPILE_LIMIT = 64  # dense + MoE blocks x train/eval x a last short batch, per method in one process


def wanted(setting, accelerator: str) -> bool:
    """Whether `model.compile` (auto | true | false) compiles for this `trainer.accelerator`."""
    if isinstance(setting, bool):
        return setting
    if str(setting) != "auto":
        raise ValueError(f"model.compile={setting!r}: choose one of {', '.join(SETTINGS)}")
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def compile_blocks(model: torch.nn.Module, backend: str = "inductor", mode: str = "default") -> None:
    """Compile each of model.blocks in place (lazily: at its first forward). State-dict keys do not
    change, so checkpoints move freely between compiled and eager runs. (backend: the tests trace
    with aot_eager, which checks the same graphs without generating kernels; mode: one of MODES,
    inductor's only.)"""
    if mode not in MODES:
        raise ValueError(f"model.compile_mode={mode!r}: choose one of {', '.join(MODES)}")
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    for block in model.blocks:
        block.compile(backend=backend, dynamic=False, mode=None if mode == "default" else mode)
    model.graph_steps = backend == "inductor" and mode in ("reduce-overhead", "max-autotune")  # CUDA graphs
