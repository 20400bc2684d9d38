"""The progress display of tokenising a corpus, shared by `data tokenize` and by `run`/`sweep` (which
prepare their data sources once, in the CLI, before any run exists: an error is then one line and no
MLflow run is left behind)."""

from __future__ import annotations

import time
from contextlib import contextmanager


@contextmanager
def tokenize_progress(console, training_bpe: bool, what: str):
    """Yields (on_plan, on_trained, progress) callbacks: a spinner while datasets open and the BPE trains,
    then documents done, documents/s, tokens written and, where the size is known, a bar and the ETA."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[docs]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[tokens]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{what}: opening", total=None, docs="", rate="", tokens="")
        started = [time.perf_counter()]

        def on_plan(total_documents: int | None) -> None:
            bar.update(
                task,
                total=total_documents,
                description=f"{what}: training the BPE" if training_bpe else f"{what}: tokenising",
            )

        def on_trained() -> None:
            started[0] = time.perf_counter()
            bar.update(task, description=f"{what}: tokenising")

        def progress(documents: int, tokens: int) -> None:
            rate = documents / max(1e-9, time.perf_counter() - started[0])
            bar.update(
                task,
                completed=documents,
                docs=f"{documents:,} docs",
                rate=f"{rate:,.0f} docs/s",
                tokens=f"{tokens:,} tokens",
            )

        try:
            yield on_plan, on_trained, progress
        except BaseException:
            bar.remove_task(task)  # the error's one line is what stays on screen
            raise


def prepare_sources(sources, console) -> None:
    """Prepare (tokenise once, cached) each of these data sources, showing progress."""
    from balance_lab.data.sources import Progress

    for source in sources:
        data = source.data
        if source.prepared:
            continue  # nothing to build, or built already (by an earlier run or an earlier point of this grid)
        what = f"data={data.get('name', data.source)} {data.get('path') or ''}".strip()
        with tokenize_progress(console, getattr(source, "trains_bpe", False), what) as callbacks:
            source.prepare(Progress(*callbacks))
        console.print(f"tokenised into {source.token_dir} (reused by every run with this corpus and tokenizer)")
