"""Where the Hydra configs and sweep files live, for an editable install and for a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # balance_lab/


def _first_existing(name: str) -> Path:
    # A wheel ships conf/ and sweeps/ inside the package; a source checkout keeps them at the top.
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"balance-lab's '{name}' directory is missing (looked next to {_PACKAGE_DIR})")


def conf_dir() -> Path:
    """The root of the Hydra config groups (model/, balance/, data/, ...)."""
    return _first_existing("conf")


def sweeps_dir() -> Path:
    """One file per ablation grid (the built-in ones)."""
    return _first_existing("sweeps")


SWEEPS_ENV = "BALANCE_LAB_SWEEPS_DIR"


def sweeps_dirs() -> list[Path]:
    """Where sweep files are looked up: $BALANCE_LAB_SWEEPS_DIR (your own grids, in a folder that
    must be named `sweeps`; its files win over built-in ones of the same name), then the built-in ones."""
    import os

    extra = os.environ.get(SWEEPS_ENV)
    return ([Path(extra).expanduser().resolve()] if extra else []) + [sweeps_dir()]


def available_sweeps() -> list[str]:
    """Every sweep name (the files of sweeps_dirs(); a glob: the CLI's --help lists them instantly)."""
    return sorted({p.stem for folder in sweeps_dirs() for p in folder.glob("*.yaml")})
