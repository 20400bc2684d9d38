"""`balance-lab data tokenize`: token files for `data=tokens`, from the built-in corpus, a text folder or any
Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from balance_lab.cli.app import PASSTHROUGH, data_app, fail

SOURCES = ("builtin", "text_dir", "hf")


@data_app.command("tokenize", context_settings=PASSTHROUGH)
def data_tokenize(
    out: Path = typer.Argument(..., help="Folder to write tokenizer.json, meta.json and `<domain>.<split>.bin` to."),
    overrides: Optional[List[str]] = typer.Argument(
        None,
        show_default=False,
        help="With --source hf: more of the "
        "data=hf config, e.g. 'data.domains={web: 0.7, forum: 0.3}' or "
        "'data.domains={web: {path: a.parquet}, code: {path: b.jsonl.zst}}' "
        "(conf/data/hf.yaml has every key).",
    ),
    source: str = typer.Option(
        "builtin",
        "--source",
        help="builtin (this Python's corpus), text_dir (--path: one "
        "subfolder of text files per domain) or hf (--path: any Hugging Face dataset).",
    ),
    path: Optional[str] = typer.Option(
        None,
        "--path",
        help="text_dir: the folder. hf: parquet / jsonl(.gz/.zst) / "
        "arrow / csv / txt files (a glob), a folder of them, a save_to_disk folder, "
        "or a hub dataset name (online only).",
    ),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="hf: the column with the text [text]."),
    domain_field: Optional[str] = typer.Option(
        None,
        "--domain-field",
        help="hf: a column whose values are the domains (a source or language field); default: one domain, all.",
    ),
    vocab_size: int = typer.Option(32000, "--vocab-size", min=257, help="BPE vocabulary (EOT included)."),
    tokenizer: Optional[Path] = typer.Option(
        None,
        "--tokenizer",
        help="Use this tokenizer.json (Hugging Face "
        "`tokenizers` format, e.g. GPT-2's or Llama's) instead of training one.",
    ),
    eot: Optional[str] = typer.Option(
        None,
        "--eot",
        help="With --tokenizer: the token between documents (default: "
        "its `<|endoftext|>`, `<|end_of_text|>`, `</s>` or `<eos>`).",
    ),
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="Train the tokenizer again even if OUT/tokenizer.json has "
        "the same vocabulary size (by default it is reused: the cache).",
    ),
    max_documents: Optional[int] = typer.Option(
        None, "--max-documents", min=1, help="At most N documents per domain (a quick look before the real thing)."
    ),
    val_fraction: float = typer.Option(
        0.05,
        "--val-fraction",
        min=0.0,
        max=1.0,
        help="Held-out fraction of documents "
        "(by a hash of the document; hf: where the dataset has no validation split).",
    ),
    streaming: bool = typer.Option(
        False,
        "--streaming",
        help="hf: read the dataset as a stream (no Arrow copy: for corpora larger than memory or disk).",
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Tokenising processes (1: this one, with the tokenizer's own threads)."
    ),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Token dtype: auto (uint16 up to 65,536 tokens, else uint32), uint16 or uint32."
    ),
) -> None:
    """Write token files for `data=tokens`: a BPE trained locally, or your tokenizer.json.

    One streaming pass: every domain's train and validation documents become flat token arrays,
    documents separated by an end-of-text token, with a progress display (documents/s, tokens, ETA
    where the size is known). The folder appears whole or not at all. Without --tokenizer a
    byte-level BPE is trained (Hugging Face `tokenizers`) on the training documents; OUT/tokenizer.json
    is then the cache: running again into OUT with the same vocabulary size reuses it.
    Examples:

        balance-lab data tokenize data/tok32k
        balance-lab data tokenize data/mine --source text_dir --path ~/corpus --vocab-size 50000
        balance-lab data tokenize data/fw --source hf --path '~/fineweb/*.parquet' --tokenizer gpt2/tokenizer.json
        balance-lab data tokenize data/sp --source hf --path ~/slimpajama --domain-field meta.redpajama_set_name
        balance-lab run data=tokens data.path=data/tok32k model=base
    """
    import time

    from balance_lab.console import console as make_console
    from balance_lab.data.tokens import DTYPES
    from balance_lab.errors import ConfigError

    if source not in SOURCES:
        fail(f"--source {source!r}: choose one of {', '.join(SOURCES)}")
    if dtype not in DTYPES:
        fail(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if overrides and source != "hf":
        fail(f"unexpected argument {overrides[0]!r}: data.* overrides go with --source hf")
    if eot is not None and tokenizer is None:
        fail("--eot goes with --tokenizer (a BPE trained here has its own end-of-text token)")
    if tokenizer is not None and not tokenizer.is_file():
        fail(f"--tokenizer {tokenizer}: no such file")
    if tokenizer is not None:
        from balance_lab.data.tokens import load_tokenizer

        try:
            load_tokenizer(tokenizer)  # before the progress display starts: a one-line error
        except ConfigError as exc:
            fail(str(exc))
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "meta.json").is_file())):
        fail(f"{out}: exists and is not a folder of token files; give a new or empty folder")
    reusable = _reusable_tokenizer(out, vocab_size, retrain) if tokenizer is None else None
    console = make_console()
    started = time.perf_counter()
    options = dict(eot=eot, dtype=dtype, workers=workers)
    try:
        if source == "hf":
            data = _hf_config(
                list(overrides or []),
                path,
                text_field,
                domain_field,
                vocab_size,
                tokenizer or reusable,
                max_documents,
                val_fraction,
                streaming,
                workers,
                eot,
            )
            meta = _write_hf(data, out, dtype, console, fresh_bpe=tokenizer is None and reusable is None)
        else:
            meta = _write_documents(
                source, path, max_documents, val_fraction, out, vocab_size, tokenizer or reusable, options, console
            )
    except ConfigError as exc:
        fail(str(exc))
    _print_summary(console, out, meta, time.perf_counter() - started)


def _reusable_tokenizer(out: Path, vocab_size: int, retrain: bool) -> Path | None:
    from balance_lab.data.tokens import load_tokenizer, vocab_of

    target = out / "tokenizer.json"
    if retrain or not target.is_file():
        return None
    return target if vocab_of(load_tokenizer(target)) == vocab_size else None


def _hf_config(
    overrides,
    path,
    text_field,
    domain_field,
    vocab_size,
    tokenizer,
    max_documents,
    val_fraction,
    streaming,
    workers,
    eot,
):
    """conf/data/hf.yaml with the user's data.* overrides, then the options given."""
    from omegaconf import OmegaConf

    from balance_lab.config.compose import compose_config
    from balance_lab.data.sources import source_for

    bad = [o for o in overrides if not o.lstrip("+~").startswith("data.")]
    if bad:
        fail(f"{bad[0]!r}: only data.* keys configure what is tokenised (conf/data/hf.yaml)")
    data = compose_config(["data=hf", *overrides]).data
    OmegaConf.set_struct(data, False)
    given = {
        "path": path,
        "text_field": text_field,
        "domain_field": domain_field,
        "eot": eot,
        "tokenizer": str(tokenizer) if tokenizer else None,
        "max_documents": max_documents,
    }
    for key, value in given.items():
        if value is not None:
            data[key] = value
    data.update(
        vocab_size=vocab_size,
        val_fraction=val_fraction,
        workers=workers,
        streaming=streaming or data.get("streaming", False),
    )
    if data.get("path") is None and not data.get("domains"):
        fail("--source hf needs --path (files, a folder or a hub dataset name) or per-domain datasets in data.domains")
    source_for(data).check()
    return data


def _write_hf(data, out: Path, dtype: str, console, fresh_bpe: bool) -> dict:
    from balance_lab.data import hf

    return _write_whole(
        out,
        console,
        fresh_bpe,
        lambda tmp, on_plan, on_trained, progress: hf.write(data, tmp, dtype, progress, on_plan, on_trained),
    )


def _write_documents(source, path, max_documents, val_fraction, out, vocab_size, tokenizer, options, console) -> dict:
    from balance_lab.data import builtin
    from balance_lab.data.tokens import document_chunks, tokenize_chunks

    makers = _corpus_documents(source, Path(path) if path else None, max_documents)
    chunks = lambda: document_chunks(makers, lambda doc_id: builtin.is_validation(doc_id, val_fraction))  # noqa: E731

    def write(tmp, on_plan, on_trained, progress) -> dict:
        on_plan(None)  # the number of documents is not known before reading them
        return tokenize_chunks(chunks, tmp, vocab_size, tokenizer, progress=progress, on_trained=on_trained, **options)

    return _write_whole(out, console, tokenizer is None, write)


def _corpus_documents(source: str, path: Path | None, max_documents: int | None) -> dict:
    """domain -> a function yielding its Documents: the built-in corpus (its default domains) or a
    text folder; at most `max_documents` per domain."""
    import itertools

    from omegaconf import OmegaConf

    from balance_lab.data.sources import TEXT_EXTENSIONS, source_for
    from balance_lab.errors import ConfigError

    if source == "text_dir" and path is None:
        raise ConfigError("--source text_dir needs --path FOLDER (one subfolder of text files per domain)")
    data = OmegaConf.create(
        {
            "source": source,
            "tokenizer": "bytes",
            "path": str(path) if path else None,
            "domains": None,
            "extensions": list(TEXT_EXTENSIONS),
            "math_documents": 4000,
            "corpus_seed": 1234,
        }
    )
    try:
        makers = source_for(data).documents()
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("data.path=", "--path ")) from exc
    if max_documents:
        makers = {d: (lambda make=make: itertools.islice(make(), max_documents)) for d, make in makers.items()}
    return makers


def _write_whole(out: Path, console, fresh_bpe: bool, write) -> dict:
    """write(tmp, on_plan, on_trained, progress) -> meta, under the progress display; `out` appears whole."""
    from balance_lab.cli.tokenizing import tokenize_progress
    from balance_lab.data.cache import build_whole

    result = {}
    with tokenize_progress(console, fresh_bpe, str(out)) as callbacks:
        build_whole(out, lambda tmp: result.update(meta=write(tmp, *callbacks)))
    return result["meta"]


def _print_summary(console, out: Path, meta: dict, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"{out} (vocabulary {meta['vocab_size']:,}, {seconds:.0f} s)", header_style="bold")
    for column in ("domain", "train documents", "train tokens", "val documents", "val tokens"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, info in meta["domains"].items():
        table.add_row(
            domain,
            f"{info['train']['documents']:,}",
            f"{info['train']['tokens']:,}",
            f"{info['val']['documents']:,}",
            f"{info['val']['tokens']:,}",
        )
    console.print(table)
    console.print(f"use it: balance-lab run data=tokens data.path={out} model.vocab_size={meta['vocab_size']}")


@data_app.command("example")
def data_example(
    out: Path = typer.Argument(..., help="Folder to write the example corpora to (new or empty)."),
    copies: int = typer.Option(
        1, "--copies", min=1, help="Repeat the corpus N times (~17 MB of text each): a larger corpus for timing."
    ),
) -> None:
    """Write the built-in corpus as FineWeb-, The Stack- and SlimPajama-like files (parquet, jsonl.zst).

    Nothing is downloaded: the documents are the built-in corpus's (standard-library code, docstrings,
    generated math), in the public corpora's layouts and columns, so `data=hf` can be tried offline with
    the commands you would use on the real files (docs/data.md):

        balance-lab data example corpora
        balance-lab run data=hf data.path=corpora/slimpajama data.domain_field=meta.redpajama_set_name
        balance-lab data tokenize tok --source hf 'data.domains={web: {path: corpora/fineweb},
            code: {path: corpora/the-stack, text_field: content}}'
    """
    from balance_lab.console import console as make_console
    from balance_lab.data.example_layout import write_example

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"{out}: exists and is not empty; give a new or empty folder")
    console = make_console()
    with console.status(f"writing {copies} cop{'y' if copies == 1 else 'ies'} of the built-in corpus ..."):
        counts = write_example(out, copies)
    for layout, documents in counts.items():
        console.print(f"{out / layout}: {documents:,} documents")
