"""The errors every wing may raise or catch: wrong input (one line, exit status 2), a non-finite
loss, and a run stopped by a signal (the store marks it KILLED, the training loop raises it)."""

from __future__ import annotations

import signal
from pathlib import Path

VERBOSE_ENV = "BALANCE_LAB_VERBOSE"  # set by `balance-lab --verbose`: full errors instead of one line


class ConfigError(ValueError):
    """A config value or option that cannot work; the message names it and the valid choices."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run stops (FAILED) instead of training on."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the run is marked KILLED."""

    def __init__(self, signum: int, step: int, checkpoint: Path, run_id: str):
        self.signum, self.step, self.checkpoint, self.run_id = signum, step, checkpoint, run_id
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line that keeps the valid choices."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc.__cause__ or exc)]
    starts = [i for i, line in enumerate(lines) if line.startswith("Available options")]
    if starts:
        options = []
        for line in lines[starts[0] + 1 :]:
            if line.endswith(":") or line.startswith(("Config search path", "provider=")):
                break
            options.append(line)
        return f"{lines[0].rstrip('.')}; choose one of {', '.join(options)}"
    return lines[0]


class DiskFull(OSError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT); the message is the whole reason
    a run records, e.g. which checkpoint was kept."""

    def __str__(self) -> str:
        return str(self.strerror)


NO_SPACE_ERRNOS = (28, 122)  # errno.ENOSPC, errno.EDQUOT (Linux)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS
