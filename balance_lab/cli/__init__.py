"""The `balance-lab` command line: one module per command, its help text the documentation.

app.py holds the Typer app and what the commands share (one-line errors, the store, config checks);
importing a command module registers its command. Entry point: `balance-lab = balance_lab.cli:app`.
May import every wing, lazily, inside the command that needs it (`balance-lab --help` stays instant).
"""

from balance_lab.privacy import mlflow_telemetry_off_unless_chosen

mlflow_telemetry_off_unless_chosen()  # before any command imports MLflow (privacy.py says why)

# Importing a command's module registers it; `balance-lab --help` lists them in this order.
from balance_lab.cli import configs, data, report, run, runs, sweep, ui  # noqa: E402, F401, I001
from balance_lab.cli.app import app  # noqa: E402

__all__ = ["app"]
