"""Composing the config outside @hydra.main (CLI validation, `configs show`, sweeps, tests)."""

from __future__ import annotations

import difflib
import re

from balance_lab.errors import ConfigError, one_line


def compose_config(overrides: list[str], with_hydra: bool = False):
    """conf/config.yaml with `overrides`; a bad override raises ConfigError with a one-line message."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from balance_lab.config import resolvers
    from balance_lab.config.paths import conf_dir

    resolvers.register()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        unknown = re.match(r"Could not override '([^']+)'", str(exc))
        if unknown:
            raise ConfigError(_unknown_key(unknown.group(1), overrides)) from exc
        raise ConfigError(_with_hint(one_line(exc))) from exc


def _with_hint(message: str) -> str:
    """Hydra's parse errors, with what to write instead."""
    if message.startswith("Error parsing override"):
        return f"{message}: an override is key=value (e.g. seed=1, model=small, +trainer.profiler=simple)"
    if message.startswith("Ambiguous value for argument"):
        return f"{message}: a list of values is a sweep (balance-lab sweep NAME key=a,b); one run takes one value"
    return message


def _unknown_key(key: str, overrides: list[str]) -> str:
    """'Could not override x.y' in words: the keys x does have, and how to add a new one."""
    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    others = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        cfg = compose_config(others)
    except ConfigError:
        return f"unknown key {key}; add a new key with +{key}=..."
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return f"unknown key {key}: {parent} is not a group of keys"
    close = difflib.get_close_matches(leaf, list(node.keys()), n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return f"unknown key {key}{hint}; {parent or 'the config'} has {', '.join(map(str, node.keys()))}"
