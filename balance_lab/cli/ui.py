"""`balance-lab ui`: the MLflow UI (the real `mlflow server`) on the same store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from balance_lab.cli.app import app, existing_store, fail


@app.command()
def ui(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to serve on; 0.0.0.0 exposes the store to the network."
    ),
    port: int = typer.Option(5000, "--port", "-p", min=0, max=65535, help="Port; 0 picks a free one."),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
) -> None:
    """Browse every run, sweep, metric and plot in the MLflow UI (the real `mlflow server`).

    Serves the same store `run`, `sweep` and `report` use, artifacts included (plots, expert
    loads, configs). Sweep children are nested under their parent run; select runs and
    *Compare* for the parallel-coordinates view of the swept params. Ctrl-C stops the server.
    MLflow's GenAI job execution stays off (set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have it).
    Examples:

        balance-lab ui
        balance-lab ui --port 0 --tracking-uri sqlite:///runs/mlflow.db
    """
    import shutil
    import tempfile

    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError
    from balance_lab.ui import server

    uri = existing_store(tracking_uri)
    try:
        port = server.choose_port(host, port)
    except ConfigError as exc:
        fail(str(exc))
    console = make_console()
    if host not in server.LOOPBACK:
        console.print(
            f"[yellow]warning: serving on {host}: anyone who can reach this machine on port {port} can read "
            "and change every run (no authentication)[/]"
        )
    log_path = Path(tempfile.mkdtemp(prefix="balance-lab-ui-")) / "mlflow-server.log"
    server.stop_on_sigterm()  # `kill` stops the server too, as Ctrl-C does
    process = server.start(uri, host, port, log_path)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        with console.status(f"starting the MLflow server on {url} ..."):
            server.wait_ready(process, url, log_path)
        _print_ui_summary(console, url, uri, server.experiments(uri), log_path)
        process.wait()
        fail(f"the MLflow server stopped on its own (status {process.returncode}); log: {log_path}", code=1)
    except KeyboardInterrupt:
        console.print("stopping the MLflow server ...")
    except RuntimeError as exc:
        fail(str(exc), code=1)
    finally:
        server.stop(process)
    shutil.rmtree(log_path.parent, ignore_errors=True)  # a clean stop: the log is kept only when it names a failure
    console.print("stopped")


def _print_ui_summary(console, url: str, uri: str, experiments: list[tuple[str, int, int]], log_path: Path) -> None:
    from rich.table import Table

    console.print(f"MLflow UI: [bold link={url}]{url}[/]  (store {uri}; server log {log_path})")
    table = Table(header_style="bold")
    for column in ("experiment", "runs", "sweep invocations"):
        table.add_column(column, justify="left" if column == "experiment" else "right")
    for name, runs, parents in experiments:
        table.add_row(name, str(runs), str(parents))
    console.print(table if experiments else "the store holds no run yet")
    console.print("Ctrl-C to stop", style="dim")
