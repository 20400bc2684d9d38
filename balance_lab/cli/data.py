"""`balance-lab data tokenize`: BPE token files for `data=tokens`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from balance_lab.cli.app import data_app, fail


@data_app.command("tokenize")
def data_tokenize(
    out: Path = typer.Argument(..., help="Folder to write tokenizer.json, meta.json and <domain>.<split>.bin to."),
    source: str = typer.Option("builtin", "--source", help="builtin (this Python's corpus) or text_dir (--path)."),
    path: Optional[Path] = typer.Option(None, "--path", help="With --source text_dir: one subfolder of text files per domain."),
    vocab_size: int = typer.Option(32000, "--vocab-size", min=257, help="BPE vocabulary (EOT included)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Reuse this tokenizer.json instead of training one."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the tokenizer again even if OUT/tokenizer.json has "
                                 "the same vocabulary size (by default it is reused: the cache)."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", min=1, help="At most N documents per domain "
                                                "(a quick look before the real thing)."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", min=0.0, max=1.0, help="Held-out fraction of documents "
                                       "(chosen by a hash of the document id, as for the built-in data)."),
) -> None:
    """Train a byte-level BPE tokenizer locally and write token files for `data=tokens`.

    Nothing is downloaded: the tokenizer is trained (Hugging Face `tokenizers`) on the training
    documents of the corpus, then every domain's train and validation documents are written as
    flat token arrays (uint16 up to 65,536 tokens), documents separated by an end-of-text token.
    OUT/tokenizer.json is the cache: running again into OUT with the same vocabulary size reuses
    it (`--retrain` trains anew).
    Examples:

        balance-lab data tokenize data/tok32k
        balance-lab data tokenize data/mine --source text_dir --path ~/corpus --vocab-size 50000
        balance-lab run data=tokens data.path=data/tok32k model=base
    """
    import time

    from balance_lab.console import console as make_console
    from balance_lab.data import builtin
    from balance_lab.data.sources import corpus_documents
    from balance_lab.data.tokens import tokenize_corpus
    from balance_lab.errors import ConfigError

    if tokenizer is not None and not tokenizer.is_file():
        fail(f"--tokenizer {tokenizer}: no such file")
    try:
        makers = corpus_documents(source, path, max_documents)
    except ConfigError as exc:
        fail(str(exc))
    if retrain:
        (out / "tokenizer.json").unlink(missing_ok=True)
    console = make_console()
    started = time.perf_counter()
    reuse = tokenizer is not None or (out / "tokenizer.json").is_file()
    with console.status("loading the tokenizer (a different --vocab-size trains a new one) ..." if reuse
                        else "training the BPE tokenizer on the training documents ...") as status:
        def progress(domain: str, tokens: dict[str, int]) -> None:
            status.update(f"tokenising: {domain} done ({tokens['train']:,} train / {tokens['val']:,} val tokens)")

        result = tokenize_corpus(makers, lambda doc_id: builtin.is_validation(doc_id, val_fraction), out,
                                 vocab_size, tokenizer, progress)
    from rich.table import Table

    table = Table(title=f"{out} (vocabulary {result.vocab_size:,}, {time.perf_counter() - started:.0f} s)", header_style="bold")
    for column in ("domain", "train tokens", "val tokens"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, splits in result.tokens.items():
        table.add_row(domain, f"{splits['train']:,}", f"{splits['val']:,}")
    console.print(table)
    console.print(f"use it: balance-lab run data=tokens data.path={out} model.vocab_size={result.vocab_size}")
