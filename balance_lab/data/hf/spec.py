"""`data=hf` config -> HFSpec: which datasets, fields, domains, weights and limits (every value checked,
no dataset opened)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from balance_lab.errors import ConfigError

VAL_SPLIT_CHOICES = "auto | hash | a split name"
ONE_DOMAIN = "all"  # the domain of a corpus with neither domain_field nor per-domain datasets


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
        raise ConfigError(
            f"data.domains={domains!r}: a mapping (value -> weight with data.domain_field, or "
            "domain -> {path: ..., weight: ...})"
        )
    common = dict(split=str(data.get("split", "train")), val_split=str(data.get("val_split", "auto")))
    mixed = domains is not None and any(isinstance(v, dict) for v in domains.values())
    if mixed:
        if domain_field is not None:
            raise ConfigError(
                "data.domain_field and per-domain datasets in data.domains: choose one (a column's "
                "values as domains, or one dataset per domain)"
            )
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
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise ConfigError(f"data.max_documents={max_documents!r}: a number of documents >= 1, or null for all")
    return HFSpec(
        corpora,
        domain_field,
        values,
        weights,
        float(data.val_fraction),
        max_documents,
        bool(data.get("streaming", False)),
        data.get("hf_cache_dir"),
    )


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
        raise ConfigError(
            f"data.domains.{domain}.{unknown[0]}: unknown key; a domain's dataset has {', '.join(sorted(known))}"
        )
    weight = _weight(f"data.domains.{domain}.weight", entry.get("weight", 1.0))
    text_field = _column_name(f"data.domains.{domain}.text_field", entry.get("text_field", text_field))
    corpus = Corpus(
        str(entry["path"]),
        text_field,
        entry.get("subset"),
        str(entry.get("split", common["split"])),
        str(entry.get("val_split", common["val_split"])),
    )
    return corpus, weight


def _weight(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}={value!r}: a weight must be a number > 0")
    return float(value)


def _value_weights(domains: dict | None, domain_field: str | None) -> dict[str, float] | None:
    if domains is None:
        return None
    if domain_field is None:
        raise ConfigError(
            f"data.domains={domains}: weights select values of data.domain_field, which is null; set "
            "data.domain_field=COLUMN, or give each domain a dataset ({web: {path: ...}})"
        )
    return {str(v): _weight(f"data.domains.{v}", w) for v, w in domains.items()}
