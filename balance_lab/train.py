"""Hydra entry point: `python -m balance_lab.train [OVERRIDES...]` (what `balance-lab run` calls;
`balance-lab sweep` calls it with `-m`, through the chosen Hydra launcher).

Only composes the config and hands it over; @hydra.main gives multirun, launchers, output
directories and logging.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from balance_lab import resolvers
from balance_lab.paths import conf_dir

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

    from balance_lab.errors import ConfigError
    from balance_lab.experiment import print_summary, run_experiment

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        result = run_experiment(cfg, hydra_cfg.runtime.output_dir, swept_values(hydra_cfg, cfg.logger.swept_keys))
    except ConfigError as exc:  # rejected by the builders, before any MLflow run was created
        print(f"error: {exc}", file=sys.stderr)
        if in_sweep:
            return None
        sys.exit(2)
    except Exception as exc:
        if not in_sweep:
            raise
        # The run is already marked FAILED with its reason; the sweep's other jobs go on.
        print(f"error: run {hydra_cfg.job.num} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    print_summary(result)
    return result.metrics.get("val/ppl")


if __name__ == "__main__":
    main()
