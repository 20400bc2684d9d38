"""OmegaConf resolvers used by the configs; registered by every entry point before composing."""

from __future__ import annotations

from omegaconf import OmegaConf


def register() -> None:
    # `${csv:${seeds}}` turns a list into Hydra sweep syntax: [0, 1, 2] -> "0,1,2"
    if not OmegaConf.has_resolver("csv"):
        OmegaConf.register_new_resolver("csv", lambda values: ",".join(str(v) for v in values))
