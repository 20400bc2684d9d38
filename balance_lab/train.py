"""Hydra entry point: `python -m balance_lab.train [OVERRIDES...]` (what `balance-lab run` calls).

Only composes the config and hands it over; @hydra.main gives multirun, launchers, output
directories and logging.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from balance_lab.paths import conf_dir


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from balance_lab.errors import ConfigError
    from balance_lab.experiment import print_summary, run_experiment
    from balance_lab.tracking import run_name

    try:
        result = run_experiment(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as exc:  # rejected by the builders, before any MLflow run was created
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print_summary(result, cfg.logger.run_name or run_name(cfg))
    return result.metrics.get("val/ppl")


if __name__ == "__main__":
    main()
