"""The progress display of tokenising a corpus, shared by `data tokenize` and by `run`/`sweep` with data=hf
(which tokenise their corpus once, in the CLI, before any run exists: an error is then one line and no
MLflow run is left behind)."""

from __future__ import annotations

import time
from contextlib import contextmanager


@contextmanager
def tokenize_progress(console, training_bpe: bool, what: str):
    """Yields (on_plan, on_trained, progress) callbacks: a spinner while datasets open and the BPE trains,
    then documents done, documents/s, tokens written and, where the size is known, a bar and the ETA."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[docs]}"),
               TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[tokens]}"), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{what}: opening", total=None, docs="", rate="", tokens="")
        started = [time.perf_counter()]

        def on_plan(total_documents: int | None) -> None:
            bar.update(task, total=total_documents,
                       description=f"{what}: training the BPE" if training_bpe else f"{what}: tokenising")

        def on_trained() -> None:
            started[0] = time.perf_counter()
            bar.update(task, description=f"{what}: tokenising")

        def progress(documents: int, tokens: int) -> None:
            rate = documents / max(1e-9, time.perf_counter() - started[0])
            bar.update(task, completed=documents, docs=f"{documents:,} docs", rate=f"{rate:,.0f} docs/s",
                       tokens=f"{tokens:,} tokens")

        try:
            yield on_plan, on_trained, progress
        except BaseException:
            bar.remove_task(task)  # the error's one line is what stays on screen
            raise


def prepare_hf(data_configs, console) -> None:
    """Tokenise (once, cached) every data=hf corpus among these data configs, showing progress."""
    from balance_lab.data import hf
    from balance_lab.data.cache import READY

    for data in data_configs:
        if data.get("source") != "hf" or (hf.token_dir(data) / READY).is_file():
            continue  # not data=hf, or tokenised already (by an earlier run or an earlier point of this grid)
        what = f"data={data.name} {data.path or ''}".strip()
        with tokenize_progress(console, hf.tokenizer_spec(data) == "bpe", what) as (on_plan, on_trained, progress):
            out = hf.ensure_token_dir(data, progress=progress, on_plan=on_plan, on_trained=on_trained)
        console.print(f"tokenised into {out} (reused by every run with this corpus and tokenizer)")
