"""The routing records of a run into its MLflow artifacts (rank 0; other ranks hold a FollowerRun):
loads/steps.parquet and its heatmap loads/steps.png, and loads/trace.parquet when tracing."""

from __future__ import annotations

from pathlib import Path

ARTIFACT_DIR = "loads"
HISTORY_FILE, HISTORY_PLOT, TRACE_FILE = "steps.parquet", "steps.png", "trace.parquet"


def log_routing_records(module, run, output_dir: Path, title: str, draw: bool = True) -> list[Path]:
    """Write what `module` recorded under output_dir/loads/ and log it to `run`; returns the files.
    Called at the end of a run, and (draw=False: the data, not the heatmap) for a failed or stopped
    one with what it had; a resumed run rewrites them, its history continued from its checkpoint."""
    if run.client is None:  # another data-parallel rank: rank 0 records (its loads are the same, all-reduced)
        return []
    folder = Path(output_dir) / ARTIFACT_DIR
    written = []
    history = module.load_history
    if history is not None:
        frame = history.frame()
        if len(frame):
            folder.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(folder / HISTORY_FILE, index=False)
            written.append(folder / HISTORY_FILE)
    if module.trace is not None and module.trace.events:
        folder.mkdir(parents=True, exist_ok=True)
        module.trace.frame().to_parquet(folder / TRACE_FILE, index=False)
        written.append(folder / TRACE_FILE)
    if draw and folder.joinpath(HISTORY_FILE) in written:
        try:  # a picture of the data above: a failure to draw it must not fail the run that trained
            written.append(draw_history(folder / HISTORY_FILE, folder / HISTORY_PLOT, title))
        except Exception as exc:  # noqa: BLE001 - say it in one line, keep the data
            why = f"{type(exc).__name__}: {exc}"
            print(f"balance-lab: the load heatmap was not drawn ({why}); loads/{HISTORY_FILE} has the data")
    for path in written:
        run.log_file(path, ARTIFACT_DIR)
    return written


def draw_history(parquet: Path, png: Path, title: str) -> Path:
    from balance_lab.diagnostics.heatmap import draw
    from balance_lab.diagnostics.load_history import read

    first_R, steps_R, layer_ids, counts_RLE = read(parquet)
    return draw(first_R, steps_R, layer_ids, counts_RLE, png, title)
