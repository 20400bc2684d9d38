"""`data=hf`: corpora read with Hugging Face `datasets`, tokenised once into token files, then memory-mapped.

`data.path` is, in this order of lookup:
- a `save_to_disk` folder (datasets.load_from_disk);
- files: one file or a glob (`~/fineweb/*.parquet`): parquet, json / jsonl / ndjson (also .gz, .zst, .bz2,
  .xz), arrow, csv, txt; all of them are the training split;
- a folder of such files: datasets infers the format, and the splits from the file names
  (train-*.parquet, validation-*.parquet, ...);
- otherwise a hub dataset name (org/name, with `data.subset`): only where the Hub can be reached; offline
  that is one line, decided within seconds, never a hang.

Domains: one ("all"), or the values of a column (`data.domain_field`, e.g. a source or language field;
`data.domains` then selects and weights values), or several datasets, one per domain
(`data.domains: {web: {path: ...}, code: {path: ..., text_field: content}}`).

Validation: the dataset's own `validation` split when it has one (`data.val_split: auto`), else a
held-out fraction chosen by a hash of each document's text, so a document (and any exact copy of it)
is on one side only, whatever the order, sharding or streaming.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from balance_lab.data.hf.locate import check_reachable, locate
from balance_lab.data.hf.read import chunks, is_held_out, plan
from balance_lab.data.hf.spec import HFSpec, spec_of
from balance_lab.errors import ConfigError

__all__ = ["check_reachable", "ensure_token_dir", "is_held_out", "spec_of", "token_dir", "tokenizer_spec", "write"]


def tokenizer_spec(data: DictConfig) -> str:
    """'bpe' or a tokenizer.json path (checked to exist)."""
    tokenizer = str(data.get("tokenizer", "bpe"))
    if tokenizer == "bpe":
        return tokenizer
    if not Path(tokenizer).expanduser().is_file():
        raise ConfigError(
            f"data.tokenizer={tokenizer!r}: choose bpe (trained on the corpus) or the path of an "
            "existing tokenizer.json"
        )
    return tokenizer


def cache_key(spec: HFSpec, data: DictConfig, tokenizer: str) -> str:
    """What the token files depend on: the datasets (local files by size and time), fields, split, domains,
    tokenizer and limits; not streaming (it gives the same files) nor the weights (applied when sampling)."""
    described = {
        "version": 1,
        "corpora": {d: {**asdict(c), "files": _fingerprint(c.path)} for d, c in spec.corpora.items()},
        "domain_field": spec.domain_field,
        "values": sorted(spec.values) if spec.values else None,
        "val_fraction": spec.val_fraction,
        "max_documents": spec.max_documents,
        "eot": data.get("eot"),
        "tokenizer": (
            f"bpe{int(data.vocab_size)}"
            if tokenizer == "bpe"
            else hashlib.sha1(Path(tokenizer).expanduser().read_bytes()).hexdigest()
        ),
    }
    return hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(path: str) -> list:
    kind, target = locate(path)
    if kind == "hub":
        return [path]
    files = target[1] if kind == "files" else sorted(p for p in Path(target).rglob("*") if p.is_file())
    return [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]


def token_dir(data: DictConfig, spec: HFSpec, tokenizer: str) -> Path:
    """<data.cache_dir>/hf-<key>: every local file stat'ed and the tokenizer hashed (data/sources/hf.py
    keeps it on the source object, so a process works it out once per config)."""
    return Path(str(data.cache_dir)).expanduser() / f"hf-{cache_key(spec, data, tokenizer)}"


def write(data: DictConfig, out: Path, dtype: str = "auto", progress=None, on_plan=None, on_trained=None) -> dict:
    """Token files for the config's corpus in `out` (meta.json last); returns the meta."""
    from balance_lab.data.tokens import tokenize_chunks

    spec = spec_of(data)
    the_plan = plan(spec)  # every dataset opened and its columns checked before anything is written
    if on_plan is not None:
        on_plan(the_plan.total_documents)
    tokenizer = tokenizer_spec(data)
    return tokenize_chunks(
        lambda: chunks(spec, the_plan),
        out,
        int(data.vocab_size),
        None if tokenizer == "bpe" else Path(tokenizer).expanduser(),
        data.get("eot"),
        dtype,
        int(data.get("workers", 1)),
        progress,
        on_trained,
    )


def ensure_token_dir(data: DictConfig, out: Path, **callbacks) -> Path:
    """The cached token files of the config's corpus in `out` (token_dir), written on first use (the CLI
    writes them before a run starts, passing write()'s progress callbacks: cli/tokenizing.py)."""
    from balance_lab.data.cache import ensure_built

    return ensure_built(out, lambda tmp: write(data, tmp, **callbacks))
