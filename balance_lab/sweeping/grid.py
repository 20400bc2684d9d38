"""Expanding a sweep file (sweeps/NAME.yaml) plus command-line overrides into grid points.

The grid is expanded here, in the CLI, so that `--dry-run`, the parent run's grid definition and
the skip-what-already-finished check all see exactly the runs that Hydra will launch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from balance_lab.config.compose import compose_config
from balance_lab.config.paths import available_sweeps, sweeps_dirs
from balance_lab.errors import ConfigError


def sweep_overrides(name: str) -> list[str]:
    """The overrides that add sweeps/NAME.yaml (a `# @package _global_` config) to the composition."""
    roots = ",".join(f"file://{folder.parent}" for folder in sweeps_dirs())
    return [f"hydra.searchpath=[{roots}]", f"+sweeps={name}"]


def _check_sweep_file(name: str) -> None:
    from balance_lab.config.paths import SWEEPS_ENV

    extra = sweeps_dirs()[:-1]
    if extra and extra[0].name != "sweeps":
        raise ConfigError(f"{SWEEPS_ENV}={extra[0]}: the folder must be named 'sweeps' (it holds NAME.yaml files)")
    if name not in available_sweeps():
        raise ConfigError(f"unknown sweep {name!r}: choose one of {', '.join(available_sweeps())}")
    path = next(folder / f"{name}.yaml" for folder in sweeps_dirs() if (folder / f"{name}.yaml").exists())
    import yaml

    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"sweep file {path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    params = (
        ((content or {}).get("hydra") or {}).get("sweeper", {}).get("params") if isinstance(content, dict) else None
    )
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"sweep file {path}: defines no grid (hydra.sweeper.params: key: value1,value2,...)")


@dataclass
class GridPoint:
    index: int
    values: dict[str, str]  # swept key -> value of this point
    run_name: str
    config_hash: str
    finished_run_id: str | None = None  # a FINISHED run with the same config, if any
    moe_layers: tuple[int, ...] = ()  # block indices of its MoE layers (the <i> of val/maxvio_global/layer_<i>)
    source: object = field(default=None, repr=False)  # its data source (prepared in the CLI before launch)

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values.items()]


@dataclass
class Grid:
    name: str
    dimensions: dict[str, list[str]]  # swept key -> its values, in sweep order
    fixed: list[str]  # the user's overrides that do not sweep
    points: list[GridPoint] = field(default_factory=list)

    @property
    def swept_keys(self) -> list[str]:
        return list(self.dimensions)

    def hydra_overrides(self) -> list[str]:
        """What `python -m balance_lab.train -m` needs to launch this grid."""
        return [*sweep_overrides(self.name), *self.fixed, *(f"{k}={','.join(v)}" for k, v in self.dimensions.items())]

    def definition(self) -> dict:
        return {
            "sweep": self.name,
            "dimensions": self.dimensions,
            "fixed_overrides": self.fixed,
            "runs": [{"run_name": p.run_name, "values": p.values, "config_hash": p.config_hash} for p in self.points],
        }


def _split(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """User overrides -> (fixed overrides, sweeping overrides as key -> values)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    fixed, dims = [], {}
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from exc
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            dims[override.key_or_group] = list(override.sweep_string_iterator())
        else:
            fixed.append(text)
    return fixed, dims


def expand(name: str, overrides: list[str]) -> Grid:
    """The grid of sweep NAME with the user's overrides; every point composed and validated."""
    from balance_lab.config.validation import check_config
    from balance_lab.store.tracking import config_hash, run_name

    _check_sweep_file(name)
    fixed, user_dims = _split(overrides)
    cfg = compose_config([*sweep_overrides(name), *fixed], with_hydra=True)
    _check_seeds(cfg.get("seeds"))
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) or {}
    _, file_dims = _split([f"{k}={v}" for k, v in params.items()])
    file_dims |= {k: [str(v).strip()] for k, v in params.items() if k not in file_dims}  # one-value "dimensions"
    # A plain override of a swept key pins that dimension to one value (balance=loss_free).
    for text in list(fixed):
        key, _, value = text.partition("=")
        if key in file_dims:
            file_dims[key] = [value]
            fixed.remove(text)
    dimensions = {**file_dims, **user_dims}
    grid = Grid(name, dimensions, fixed)
    for index, combo in enumerate(itertools.product(*dimensions.values())):
        values = dict(zip(dimensions, combo))
        point_cfg = compose_config([*sweep_overrides(name), *fixed, *(f"{k}={v}" for k, v in values.items())])
        try:
            spec = check_config(point_cfg)
        except ConfigError as exc:
            raise ConfigError(f"run {index} ({', '.join(f'{k}={v}' for k, v in values.items())}): {exc}") from exc
        resolved = OmegaConf.to_container(point_cfg, resolve=True)
        grid.points.append(
            GridPoint(
                index,
                values,
                run_name(resolved, values),
                config_hash(resolved),
                moe_layers=tuple(spec.model.moe_layer_ids),
                source=spec.source,
            )
        )
    _check_distinct(grid)
    return grid


def _check_seeds(seeds) -> None:
    """A sweep file's `seeds:` list (what its seed dimension interpolates), as the user may have replaced it."""
    from omegaconf import ListConfig

    if seeds is None:
        return
    items = list(seeds) if isinstance(seeds, ListConfig) else None
    if not items or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in items):
        shown = OmegaConf.to_container(seeds) if isinstance(seeds, ListConfig) else seeds
        raise ConfigError(f"seeds={shown!r}: must be a list of integers >= 0, e.g. seeds=[0,1,2]")


def _check_distinct(grid: Grid) -> None:
    """Two points with one config (seeds=[0,0,1], or 1e-2 and 0.01) would train the same run twice."""
    first_of: dict[str, GridPoint] = {}
    for point in grid.points:
        same = first_of.setdefault(point.config_hash, point)
        if same is not point:
            shown = ", ".join(f"{k}={v}" for k, v in point.values.items())
            raise ConfigError(
                f"runs {same.index} and {point.index} are one configuration ({shown}): a value is listed twice; "
                "list each once"
            )
