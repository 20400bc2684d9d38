"""Reading a corpus with `datasets`: every dataset opened and its columns checked first (a Plan), then
chunks of (domain, split, texts) in the datasets' order, the split by the dataset's own validation
split or a hash of the text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from balance_lab.data.hf.locate import check_hub_reachable, check_reachable, locate
from balance_lab.data.hf.spec import ONE_DOMAIN, VAL_SPLIT_CHOICES, Corpus, HFSpec
from balance_lab.errors import ConfigError

CHUNK = 1000  # documents per chunk read from the dataset and handed to the encoder


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
            return dict(
                datasets.load_dataset(builder, data_files={"train": files}, streaming=streaming, cache_dir=cache_dir)
            )
        if kind == "hub":
            check_hub_reachable(corpus.path)
        return dict(datasets.load_dataset(target, corpus.subset, streaming=streaming, cache_dir=cache_dir))
    except ConfigError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many kinds; the first line says what was wrong
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"data.path={corpus.path!r}: not a dataset that can be read ({type(exc).__name__}: {reason})"
        ) from exc


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
        raise ConfigError(
            f"data.val_split={val_split!r}: {where} has no such split; its splits: "
            f"{', '.join(splits)} ({VAL_SPLIT_CHOICES})"
        )
    if val_split == corpus.split:
        raise ConfigError(f"data.val_split={val_split!r}: the training split itself; validation must never overlap it")
    return [("train", splits[corpus.split]), ("val", splits[val_split])]


def is_held_out(text: str, val_fraction: float) -> bool:
    """The built-in corpus's hash split, keyed on the text: the same document is on the same side in any
    order, shard or stream."""
    from balance_lab.data.builtin import is_validation

    return is_validation(text, val_fraction)


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
            raise ConfigError(
                f"data.domains: no document has {spec.domain_field}={missing[0]!r}; values found: "
                f"{', '.join(sorted(seen)[:20]) or 'none'}"
            )
    for domain in spec.corpora:
        if domain and not counts.get(domain):
            raise ConfigError(f"data.domains.{domain}: {spec.corpora[domain].path} has no document with text")


def _batch_chunks(spec: HFSpec, domain: str, side: str, corpus: Corpus, batch: dict, counts: dict, seen: set):
    texts_B = _texts(batch, corpus.text_field)
    domains_B = (
        [_domain_name(v) for v in _column(batch, spec.domain_field)] if spec.domain_field else [domain] * len(texts_B)
    )
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
