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

import glob
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from balance_lab.errors import ConfigError

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".arrow": "arrow",
            ".csv": "csv", ".txt": "text"}
COMPRESSIONS = (".gz", ".zst", ".zstd", ".bz2", ".xz")
VAL_SPLIT_CHOICES = "auto | hash | a split name"
ONE_DOMAIN = "all"
CHUNK = 1000  # documents per chunk read from the dataset and handed to the encoder
HUB_PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class Corpus:
    """One dataset: where it is and how to read its documents."""

    path: str
    text_field: str = "text"
    subset: str | None = None  # the hub dataset's configuration name
    split: str = "train"
    val_split: str = "auto"


@dataclass(frozen=True)
class HFSpec:
    corpora: dict[str, Corpus]  # domain -> its dataset; {"": corpus} when the domains come from domain_field
    domain_field: str | None = None
    values: tuple[str, ...] | None = None  # with domain_field: the values kept (None: every value)
    weights: dict[str, float] | None = None  # domain -> training weight (None: every domain found, equally)
    val_fraction: float = 0.05
    max_documents: int | None = None  # per domain
    streaming: bool = False
    hf_cache_dir: str | None = None


def spec_of(data: DictConfig) -> HFSpec:
    """The config's `data` (source hf) as a spec; every value checked (no dataset is opened)."""
    text_field = _column_name("data.text_field", data.get("text_field", "text"))
    domain_field = data.get("domain_field")
    if domain_field is not None:
        domain_field = _column_name("data.domain_field", domain_field)
    domains = OmegaConf.to_container(data.domains, resolve=True) if data.get("domains") is not None else None
    if domains is not None and (not isinstance(domains, dict) or not domains):
        raise ConfigError(f"data.domains={domains!r}: a mapping (value -> weight with data.domain_field, or "
                          "domain -> {path: ..., weight: ...})")
    common = dict(split=str(data.get("split", "train")), val_split=str(data.get("val_split", "auto")))
    mixed = domains is not None and any(isinstance(v, dict) for v in domains.values())
    if mixed:
        if domain_field is not None:
            raise ConfigError("data.domain_field and per-domain datasets in data.domains: choose one (a column's "
                              "values as domains, or one dataset per domain)")
        corpora, weights = {}, {}
        for domain, entry in domains.items():
            corpora[str(domain)], weights[str(domain)] = _corpus_entry(str(domain), entry, text_field, common)
        values = None
    else:
        if data.get("path") is None:
            raise ConfigError("data.path is required for data=hf (files, a folder or a hub dataset name)")
        corpora = {"" if domain_field else ONE_DOMAIN: Corpus(str(data.path), text_field, data.get("subset"), **common)}
        weights = _value_weights(domains, domain_field)
        values = tuple(weights) if weights else None
    for corpus in corpora.values():
        if not corpus.val_split:
            raise ConfigError(f"data.val_split={corpus.val_split!r}: choose {VAL_SPLIT_CHOICES}")
    max_documents = data.get("max_documents")
    if max_documents is not None and (isinstance(max_documents, bool) or not isinstance(max_documents, int)
                                      or max_documents < 1):
        raise ConfigError(f"data.max_documents={max_documents!r}: a number of documents >= 1, or null for all")
    return HFSpec(corpora, domain_field, values, weights, float(data.val_fraction), max_documents,
                  bool(data.get("streaming", False)), data.get("hf_cache_dir"))


def _column_name(key: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value!r}: a column name")
    return value


def _corpus_entry(domain: str, entry, text_field: str, common: dict) -> tuple[Corpus, float]:
    if not isinstance(entry, dict) or "path" not in entry:
        raise ConfigError(f"data.domains.{domain}={entry!r}: give every domain a dataset ({{path: ..., weight: ...}})")
    known = {"path", "weight", "text_field", "subset", "split", "val_split"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"data.domains.{domain}.{unknown[0]}: unknown key; a domain's dataset has {', '.join(sorted(known))}")
    weight = _weight(f"data.domains.{domain}.weight", entry.get("weight", 1.0))
    text_field = _column_name(f"data.domains.{domain}.text_field", entry.get("text_field", text_field))
    corpus = Corpus(str(entry["path"]), text_field, entry.get("subset"),
                    str(entry.get("split", common["split"])), str(entry.get("val_split", common["val_split"])))
    return corpus, weight


def _weight(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r}: a weight must be a number > 0")
    return float(value)


def _value_weights(domains: dict | None, domain_field: str | None) -> dict[str, float] | None:
    if domains is None:
        return None
    if domain_field is None:
        raise ConfigError(f"data.domains={domains}: weights select values of data.domain_field, which is null; set "
                          "data.domain_field=COLUMN, or give each domain a dataset ({web: {path: ...}})")
    return {str(v): _weight(f"data.domains.{v}", w) for v, w in domains.items()}


# -- where a dataset is -------------------------------------------------------------------------------------

def locate(path: str) -> tuple[str, object]:
    """("disk", folder) | ("files", (builder, [files])) | ("folder", folder) | ("hub", name)."""
    expanded = os.path.expanduser(path)
    if glob.has_magic(expanded):
        files = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not files:
            raise ConfigError(f"data.path={path!r}: no file matches")
        return "files", (_builder(path, files), files)
    target = Path(expanded)
    if target.is_file():
        return "files", (_builder(path, [str(target)]), [str(target)])
    if target.is_dir():
        if (target / "dataset_dict.json").is_file() or (target / "state.json").is_file():
            return "disk", str(target)
        return "folder", str(target)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) and not path.startswith((".", "~")):
        return "hub", path
    raise ConfigError(f"data.path={path!r}: no such file or folder (nor a hub dataset name, org/name)")


def _builder(path: str, files: list[str]) -> str:
    builders = set()
    for name in files:
        base = name.lower()
        for ending in COMPRESSIONS:
            base = base.removesuffix(ending)
        suffix = os.path.splitext(base)[1]
        if suffix not in BUILDERS:
            raise ConfigError(f"data.path={path!r}: {os.path.basename(name)} is not a dataset file this reads "
                              f"({', '.join(BUILDERS)}, also compressed: {', '.join(COMPRESSIONS)})")
        builders.add(BUILDERS[suffix])
    if len(builders) > 1:
        raise ConfigError(f"data.path={path!r}: mixes {' and '.join(sorted(builders))} files; one format per dataset "
                          "(several datasets: one per domain in data.domains)")
    return builders.pop()


def check_hub_reachable(path: str) -> None:
    """Raise at once when a hub dataset cannot be fetched: offline mode, or no answer within seconds."""
    import socket
    import threading
    from urllib.parse import urlparse

    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on"):
            raise ConfigError(f"data.path={path!r}: not a local file or folder, and the Hugging Face Hub is off here "
                              f"({flag}=1); a hub dataset needs the network: give a local path")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: list = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores the socket's timeout
    thread.start()
    thread.join(HUB_PROBE_SECONDS + 1)
    if not outcome or outcome[0] is not None:
        reason = "no answer" if not outcome else (outcome[0].strerror or type(outcome[0]).__name__)
        raise ConfigError(f"data.path={path!r}: not a local file or folder, and the Hugging Face Hub ({host}) cannot "
                          f"be reached ({reason}): offline? a hub dataset needs the network; give a local path")


def check_reachable(spec: HFSpec) -> None:
    """Every dataset's path names something (files, a folder, a hub dataset that can be fetched)."""
    for domain, corpus in spec.corpora.items():
        try:
            kind, _ = locate(corpus.path)
            if kind == "hub":
                check_hub_reachable(corpus.path)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("data.path=", f"data.domains.{domain}.path=") if domain and
                              domain != ONE_DOMAIN else str(exc)) from exc


# -- reading ------------------------------------------------------------------------------------------------

def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()  # balance-lab shows its own
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors become our one line
    return datasets


def open_splits(corpus: Corpus, streaming: bool, cache_dir: str | None) -> dict:
    """split name -> Dataset (or IterableDataset when streaming)."""
    datasets = _quiet_datasets()
    kind, target = locate(corpus.path)
    try:
        if kind == "disk":
            loaded = datasets.load_from_disk(target)
            loaded = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
            return {s: d.to_iterable_dataset() if streaming else d for s, d in loaded.items()}
        if kind == "files":
            builder, files = target
            return dict(datasets.load_dataset(builder, data_files={"train": files}, streaming=streaming,
                                              cache_dir=cache_dir))
        if kind == "hub":
            check_hub_reachable(corpus.path)
        return dict(datasets.load_dataset(target, corpus.subset, streaming=streaming, cache_dir=cache_dir))
    except ConfigError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many kinds; the first line says what was wrong
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"data.path={corpus.path!r}: not a dataset that can be read ({type(exc).__name__}: "
                          f"{reason})") from exc


def columns(dataset) -> list[str]:
    names = dataset.column_names
    if names is None:  # a stream without a schema: the first row tells
        first = next(iter(dataset), None)
        names = list(first) if first else []
    return list(names)


def field_value(row: dict, dotted: str):
    """row["a"]["b"] for "a.b" (a nested field, e.g. SlimPajama's meta.redpajama_set_name)."""
    value = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_columns(dataset, corpus: Corpus, domain_field: str | None, where: str) -> None:
    have = columns(dataset)
    for key, name in (("text_field", corpus.text_field), ("domain_field", domain_field)):
        if name is not None and name.split(".")[0] not in have:
            raise ConfigError(f"data.{key}={name!r}: {where} has no such column; its columns: {', '.join(have)}")


def _read_plan(corpus: Corpus, splits: dict, where: str) -> list[tuple[str, object]]:
    """[(our split or "hash", dataset)]: what to read, and which side each dataset's documents go to."""
    if corpus.split not in splits:
        raise ConfigError(f"data.split={corpus.split!r}: {where} has no such split; its splits: {', '.join(splits)}")
    val_split = corpus.val_split
    if val_split == "auto":
        val_split = "validation" if "validation" in splits and corpus.split != "validation" else "hash"
    if val_split == "hash":
        return [("hash", splits[corpus.split])]
    if val_split not in splits:
        raise ConfigError(f"data.val_split={val_split!r}: {where} has no such split; its splits: "
                          f"{', '.join(splits)} ({VAL_SPLIT_CHOICES})")
    if val_split == corpus.split:
        raise ConfigError(f"data.val_split={val_split!r}: the training split itself; validation must never overlap it")
    return [("train", splits[corpus.split]), ("val", splits[val_split])]


def is_held_out(text: str, val_fraction: float) -> bool:
    """A hash of the text: the same document is on the same side in any order, shard or stream."""
    bucket = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()[:4],
                            "big") % 10_000
    return bucket < val_fraction * 10_000


@dataclass
class Plan:
    """Everything opened and checked before a token is written: (domain, or "" when a column names it;
    side: train | val | hash; the dataset; its Corpus) per read, in order."""

    reads: list[tuple[str, str, object, Corpus]]
    total_documents: int | None  # known without reading (not streaming), else None


def plan(spec: HFSpec) -> Plan:
    check_reachable(spec)
    reads, total = [], 0
    for domain, corpus in spec.corpora.items():
        where = corpus.path if not domain or domain == ONE_DOMAIN else f"{corpus.path} (domain {domain})"
        splits = open_splits(corpus, spec.streaming, spec.hf_cache_dir)
        for side, dataset in _read_plan(corpus, splits, where):
            _check_columns(dataset, corpus, spec.domain_field, where)
            keep = sorted({c.split(".")[0] for c in (corpus.text_field, spec.domain_field) if c})
            reads.append((domain, side, dataset.select_columns(keep), corpus))
            total = total + len(dataset) if total is not None and hasattr(dataset, "__len__") else None
    return Plan(reads, None if spec.max_documents or spec.values else total)  # a bar to 100% or none


def chunks(spec: HFSpec, the_plan: Plan) -> Iterator[tuple[str, str, list[str]]]:
    """(domain, split, texts) in the datasets' order; raises for a domain asked for and never seen."""
    counts: dict = {}  # documents kept per domain, and per (domain, read) for data.max_documents
    seen: set[str] = set()  # every value of domain_field met, kept or not (for the error below)
    for domain, side, dataset, corpus in the_plan.reads:
        for batch in dataset.iter(batch_size=CHUNK):
            yield from _batch_chunks(spec, domain, side, corpus, batch, counts, seen)
    if spec.values:
        missing = [v for v in spec.values if not counts.get(v)]
        if missing:
            raise ConfigError(f"data.domains: no document has {spec.domain_field}={missing[0]!r}; values found: "
                              f"{', '.join(sorted(seen)[:20]) or 'none'}")
    for domain in spec.corpora:
        if domain and not counts.get(domain):
            raise ConfigError(f"data.domains.{domain}: {spec.corpora[domain].path} has no document with text")


def _batch_chunks(spec: HFSpec, domain: str, side: str, corpus: Corpus, batch: dict, counts: dict, seen: set):
    texts_B = _texts(batch, corpus.text_field)
    domains_B = ([_domain_name(v) for v in _column(batch, spec.domain_field)] if spec.domain_field
                 else [domain] * len(texts_B))
    seen.update(domains_B)
    grouped: dict[tuple[str, str], list[str]] = {}
    for text, name in zip(texts_B, domains_B):
        if not text or (spec.values is not None and name not in spec.values):
            continue
        if spec.max_documents and counts.get((name, side), 0) >= spec.max_documents:
            continue  # the limit holds per read: a dataset's own validation split gets its N as well
        counts[(name, side)] = counts.get((name, side), 0) + 1
        counts[name] = counts.get(name, 0) + 1
        split = ("val" if is_held_out(text, spec.val_fraction) else "train") if side == "hash" else side
        grouped.setdefault((name, split), []).append(text)
    for (name, split), texts in grouped.items():
        yield name, split, texts


def _column(batch: dict, dotted: str) -> list:
    top, _, rest = dotted.partition(".")
    values = batch[top]
    return [field_value(v, rest) if rest else v for v in values] if rest else values


def _texts(batch: dict, text_field: str) -> list[str]:
    values = _column(batch, text_field)
    bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
    if bad is not None:
        raise ConfigError(f"data.text_field={text_field!r}: holds {type(bad).__name__} values, not text")
    return [v or "" for v in values]


def _domain_name(value) -> str:
    return "null" if value is None else str(value)


# -- the token files behind a run -----------------------------------------------------------------------------

def tokenizer_spec(data: DictConfig) -> str:
    """'bpe' or a tokenizer.json path (checked to exist)."""
    tokenizer = str(data.get("tokenizer", "bpe"))
    if tokenizer == "bpe":
        return tokenizer
    if not Path(tokenizer).expanduser().is_file():
        raise ConfigError(f"data.tokenizer={tokenizer!r}: choose bpe (trained on the corpus) or the path of an "
                          "existing tokenizer.json")
    return tokenizer


def vocab_size(data: DictConfig) -> int:
    from balance_lab.data.tokens import load_tokenizer, vocab_of

    tokenizer = tokenizer_spec(data)
    if tokenizer == "bpe":
        return int(data.vocab_size)
    return vocab_of(load_tokenizer(Path(tokenizer).expanduser(), f"data.tokenizer={tokenizer!r}:"))


def cache_key(spec: HFSpec, data: DictConfig) -> str:
    """What the token files depend on: the datasets (local files by size and time), fields, split, domains,
    tokenizer and limits; not streaming (it gives the same files) nor the weights (applied when sampling)."""
    tokenizer = tokenizer_spec(data)
    described = {
        "version": 1,
        "corpora": {d: {**asdict(c), "files": _fingerprint(c.path)} for d, c in spec.corpora.items()},
        "domain_field": spec.domain_field, "values": sorted(spec.values) if spec.values else None,
        "val_fraction": spec.val_fraction, "max_documents": spec.max_documents, "eot": data.get("eot"),
        "tokenizer": (f"bpe{int(data.vocab_size)}" if tokenizer == "bpe"
                      else hashlib.sha1(Path(tokenizer).expanduser().read_bytes()).hexdigest()),
    }
    return hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(path: str) -> list:
    kind, target = locate(path)
    if kind == "hub":
        return [path]
    files = target[1] if kind == "files" else sorted(p for p in Path(target).rglob("*") if p.is_file())
    return [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]


def token_dir(data: DictConfig) -> Path:
    spec = spec_of(data)
    return Path(str(data.cache_dir)).expanduser() / f"hf-{cache_key(spec, data)}"


def write(data: DictConfig, out: Path, dtype: str = "auto", progress=None, on_plan=None, on_trained=None) -> dict:
    """Token files for the config's corpus in `out` (meta.json last); returns the meta."""
    from balance_lab.data.tokens import tokenize_chunks

    spec = spec_of(data)
    the_plan = plan(spec)  # every dataset opened and its columns checked before anything is written
    if on_plan is not None:
        on_plan(the_plan.total_documents)
    tokenizer = tokenizer_spec(data)
    return tokenize_chunks(lambda: chunks(spec, the_plan), out, int(data.vocab_size),
                           None if tokenizer == "bpe" else Path(tokenizer).expanduser(), data.get("eot"), dtype,
                           int(data.get("workers", 1)), progress, on_trained)


def ensure_token_dir(data: DictConfig) -> Path:
    """The cached token files of the config's corpus, written on first use (the CLI writes them before
    a run starts, with a progress display: cli/tokenizing.py)."""
    from balance_lab.data.cache import ensure_built

    return ensure_built(token_dir(data), lambda tmp: write(data, tmp))
