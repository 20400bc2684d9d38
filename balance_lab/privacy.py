"""MLflow 3 sends usage telemetry by default, and on a machine without internet each process waits
up to a second trying. A lab tool should not report on its users by surprise, and cluster nodes are
often offline, so balance-lab's processes (the CLI, the training process, the servers they start)
run with it off, unless the user has decided: an explicit MLFLOW_DISABLE_TELEMETRY or DO_NOT_TRACK
in the environment wins, whatever its value."""

from __future__ import annotations

import os

TELEMETRY_ENV = "MLFLOW_DISABLE_TELEMETRY"
USER_CHOICES = (TELEMETRY_ENV, "DO_NOT_TRACK")


def mlflow_telemetry_off_unless_chosen() -> None:
    """Before MLflow is imported: telemetry off for this process and those it starts, unless chosen."""
    if not any(name in os.environ for name in USER_CHOICES):
        os.environ[TELEMETRY_ENV] = "true"
