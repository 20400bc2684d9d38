"""`python -m balance_lab.cli` = `balance-lab`."""

from balance_lab.cli import app

app()
