"""Hydra entry point: `python -m balance_lab.train [OVERRIDES...]` (what `balance-lab run` calls;
`balance-lab sweep` calls it with `-m`, through the chosen Hydra launcher).

Only composes the config and hands it over; @hydra.main gives multirun, launchers, output
directories and logging.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from balance_lab.config import resolvers
from balance_lab.config.paths import conf_dir
from balance_lab.privacy import mlflow_telemetry_off_unless_chosen
from balance_lab.sweeping import stopping

mlflow_telemetry_off_unless_chosen()  # `python -m balance_lab.train` started directly, not through the CLI
resolvers.register()


def swept_values(hydra_cfg, keys) -> dict[str, str]:
    """This job's values of the keys its sweep varies, from the job's own overrides."""
    values = {}
    for override in hydra_cfg.overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if key in keys:
            values[key] = value
    return values


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from balance_lab.errors import VERBOSE_ENV, ConfigError, Interrupted
    from balance_lab.training.experiment import run_experiment
    from balance_lab.training.summary import print_summary

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if in_sweep and stopping.stopping(hydra_cfg.sweep.dir):  # a signal stopped the sweep: start nothing new
        print(f"run {hydra_cfg.job.num} not started: the sweep is stopping", file=sys.stderr)
        return None
    global _job_here
    _job_here = True
    try:
        result = run_experiment(cfg, hydra_cfg.runtime.output_dir, swept_values(hydra_cfg, cfg.logger.swept_keys))
    except ConfigError as exc:  # rejected before any MLflow run was created
        return _stop(f"error: {exc}", 2, in_sweep)
    except Interrupted as exc:  # the run is KILLED, its checkpoint saved; a sweep stops too (re-running it continues)
        print(f"{exc}; continue with: balance-lab run --resume {exc.run_id}", file=sys.stderr)
        if in_sweep:  # the other jobs finish their step too; none starts after (not an exception: the
            stopping.mark_stopping(Path(hydra_cfg.sweep.dir))  # launcher would kill them mid-checkpoint)
            return None
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: the run is marked KILLED", file=sys.stderr)
        if in_sweep:
            raise
        sys.exit(130)
    except Exception as exc:  # the run is marked FAILED with this reason; a sweep's other jobs go on
        if os.environ.get(VERBOSE_ENV):
            traceback.print_exc()
        job = f"run {hydra_cfg.job.num} " if in_sweep else "run "
        return _stop(f"error: {job}failed: {type(exc).__name__}: {exc}", 1, in_sweep)
    finally:
        _job_here = False
    from balance_lab.store.tracking import launched_as_rank_zero

    if launched_as_rank_zero():  # one summary per run, not one per data-parallel rank
        print_summary(result)
    return result.metrics.get("val/ppl")


def _stop(message: str, code: int, in_sweep: bool) -> None:
    print(message, file=sys.stderr)
    if not in_sweep:
        sys.exit(code)
    return None


_job_here = False  # whether a job runs in this process now (Hydra's basic launcher), not in a worker


def _stop_sweep(signum, frame) -> None:
    """The multirun driver's SIGINT/SIGTERM: no job starts after it (the STOP mark). A job running in
    this process (basic launcher) stops as on its own; with joblib or submitit the jobs received the
    signal themselves, and the driver waits for them instead of killing them mid-checkpoint."""
    for arg in sys.argv:
        if arg.startswith("hydra.sweep.dir="):
            stopping.mark_stopping(Path(arg.split("=", 1)[1]))
    if _job_here:
        raise KeyboardInterrupt


if __name__ == "__main__":
    if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop_sweep)
    main()
