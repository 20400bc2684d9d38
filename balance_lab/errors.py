"""Errors that mean "the input is wrong", reported as one line with exit status 2."""

from __future__ import annotations


VERBOSE_ENV = "BALANCE_LAB_VERBOSE"  # set by `balance-lab --verbose`: full errors instead of one line


class ConfigError(ValueError):
    """A config value or option that cannot work; the message names it and the valid choices."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run stops (FAILED) instead of training on."""


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line that keeps the valid choices."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc.__cause__ or exc)]
    starts = [i for i, line in enumerate(lines) if line.startswith("Available options")]
    if starts:
        options = []
        for line in lines[starts[0] + 1:]:
            if line.endswith(":") or line.startswith(("Config search path", "provider=")):
                break
            options.append(line)
        return f"{lines[0].rstrip('.')}; choose one of {', '.join(options)}"
    return lines[0]
