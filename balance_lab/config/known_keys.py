"""The keys a config group may hold. Hydra's `+model.n_layer=4` adds a key no code reads (the
model would train with its 2 layers and record the typo as a param); here it is an error naming the
nearest key that exists.

A group's keys are those of its files (conf/<group>/*.yaml: any preset's key is a key of the group,
its dataclass's fields too); the trainer's are Lightning Trainer's arguments, read from Lightning
only when a key is in no trainer file (an import of seconds, paid only then). The top level's keys
are conf/config.yaml's, its groups' and those that sweep and experiment files define at their top
(`seeds:` for a grid to interpolate), so `+seeed=3` is an error, not a run with seed 0.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from omegaconf import DictConfig, OmegaConf

from balance_lab.errors import ConfigError

GROUPS = ("model", "optim", "data", "trainer")  # a folder of conf/ each
BLOCKS = ("checkpoint", "alerts")  # a block of conf/config.yaml each


def check_known_keys(cfg: DictConfig) -> None:
    """ConfigError for the first key of a closed group that no file of the group has."""
    unknown = sorted(set(map(str, cfg.keys())) - _top_level_keys())
    if unknown:
        valid = sorted(_top_level_keys() - {"hydra"})
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"{unknown[0]}: nothing reads this top-level key{hint}; the top level has {', '.join(valid)} "
            "(a sweep or experiment file that defines a key at its top adds it)"
        )
    for group in (*GROUPS, *BLOCKS):
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        unknown = sorted(set(map(str, node.keys())) - _keys(group))
        if group == "trainer" and unknown:
            unknown = sorted(set(unknown) - _trainer_arguments())
        if unknown:
            raise ConfigError(_message(group, unknown[0]))


def _message(group: str, key: str) -> str:
    """The key, the nearest valid one, and where the valid ones are."""
    if group == "trainer":
        close = difflib.get_close_matches(key, sorted(_keys(group) | _trainer_arguments()), n=1)
        hint = f"did you mean trainer.{close[0]}? " if close else ""
        return f"trainer.{key}: not an argument of lightning.Trainer ({hint}see lightning.Trainer's documentation)"
    valid = sorted(_keys(group))
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {group}.{close[0]}?)" if close else ""
    return f"{group}.{key}: nothing reads this key{hint}; {group} has {', '.join(valid)}"


@lru_cache(maxsize=None)
def _keys(group: str) -> frozenset[str]:
    from balance_lab.config.paths import conf_dir

    if group in BLOCKS:
        return frozenset(OmegaConf.load(conf_dir() / "config.yaml")[group].keys())
    keys = {str(k) for path in sorted((conf_dir() / group).glob("*.yaml")) for k in OmegaConf.load(path).keys()}
    keys.discard("defaults")
    if group == "model":
        from dataclasses import fields

        from balance_lab.model.args import ModelArgs

        keys |= {f.name for f in fields(ModelArgs)}
    return frozenset(keys)


@lru_cache(maxsize=None)
def _top_level_keys() -> frozenset[str]:
    """conf/config.yaml's keys, the config groups (conf/'s folders), and the top-level keys of every
    sweep file (yours in $BALANCE_LAB_SWEEPS_DIR too) and experiment file."""
    from balance_lab.config.paths import conf_dir, sweeps_dirs

    root = conf_dir()
    keys = {str(k) for k in OmegaConf.load(root / "config.yaml").keys()} | {"hydra"}
    keys |= {path.name for path in root.iterdir() if path.is_dir()}
    files = [path for folder in (*sweeps_dirs(), root / "experiment") for path in sorted(folder.glob("*.yaml"))]
    keys |= {str(k) for path in files for k in (OmegaConf.load(path) or {}).keys()}
    keys.discard("defaults")
    return frozenset(keys)


@lru_cache(maxsize=None)
def _trainer_arguments() -> frozenset[str]:
    import inspect

    import lightning as L

    return frozenset(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
