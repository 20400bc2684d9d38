"""OmegaConf resolvers used by the configs; registered by every entry point before composing."""

from __future__ import annotations

from omegaconf import OmegaConf

# The loss-free update rate for a run of T optimizer steps (docs/laptop-scale.md, "u for the horizon"):
# u = min(MAX_RATE, max(PAPER_RATE, BIAS_TRAVEL / T)). With the sign rule a bias moves at most u per
# step: BIAS_TRAVEL / T lets it cross 0.3 (the bias spread balance needs: train/bias_range) in the
# first tenth of the run. Each step also moves tokens by u, the late-run jitter a large u costs: at
# 300 steps u = 3e-2 ended less balanced than 1e-2 (val MaxVio_global 0.35 vs 0.18), so u stays at or
# below 1e-2; long runs keep the paper's 1e-3 (40,000 steps at 1B).
PAPER_RATE = 1e-3
MAX_RATE = 1e-2
BIAS_TRAVEL = 3.0


def horizon_rate(max_steps: int) -> float:
    """u for a run of `max_steps` steps: 1e-2 up to 300 steps, 3 / max_steps, 1e-3 from 3,000 (2 digits)."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        return PAPER_RATE  # trainer.max_steps is checked (and its error reported) elsewhere
    return float(f"{min(MAX_RATE, max(PAPER_RATE, BIAS_TRAVEL / max_steps)):.2g}")


def register() -> None:
    # `${csv:${seeds}}` turns a list into Hydra sweep syntax: [0, 1, 2] -> "0,1,2"
    if not OmegaConf.has_resolver("csv"):
        OmegaConf.register_new_resolver("csv", lambda values: ",".join(str(v) for v in values))
    # `${horizon_rate:${trainer.max_steps}}`: the loss-free u scaled to the run's length
    if not OmegaConf.has_resolver("horizon_rate"):
        OmegaConf.register_new_resolver("horizon_rate", horizon_rate)
