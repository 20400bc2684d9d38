"""Composing the config outside @hydra.main (CLI validation, `configs show`, sweeps, tests)."""

from __future__ import annotations

from balance_lab.errors import ConfigError, one_line


def compose_config(overrides: list[str], with_hydra: bool = False):
    """conf/config.yaml with `overrides`; a bad override raises ConfigError with a one-line message."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from balance_lab import resolvers
    from balance_lab.paths import conf_dir

    resolvers.register()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc)) from exc
