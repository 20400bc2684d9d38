"""Where a run's text comes from: the `data` config's source, checked and loaded.

- builtin:  the corpus made from this Python installation (balance_lab.data.builtin);
- text_dir: a folder of the user's text, one subfolder per domain, every text file below it a
            document (split by a hash of its path, as the built-in corpus is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from balance_lab.errors import ConfigError

SOURCES = ("builtin", "text_dir")


def _source(data: DictConfig) -> str:
    source = data.get("source", "builtin")
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r}: choose one of {', '.join(SOURCES)}")
    return source


def text_dir_domains(data: DictConfig) -> dict[str, list[Path]]:
    """domain (subfolder name) -> its text files, for the domains the config asks for."""
    root = Path(str(data.path)).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.path={str(data.path)!r}: no such folder (a folder with one subfolder of text files per domain)")
    suffixes = tuple(data.extensions)
    found = {d.name: sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in suffixes)
             for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    found = {name: files for name, files in found.items() if files}
    if not found:
        raise ConfigError(f"data.path={str(data.path)!r}: empty corpus, no subfolder holds a {'/'.join(suffixes)} file "
                          "(one subfolder per domain)")
    wanted = list(data.domains) if data.get("domains") else list(found)
    missing = [d for d in wanted if d not in found]
    if missing:
        raise ConfigError(f"data.domains: no text for {', '.join(missing)} under {data.path}; "
                          f"domains found: {', '.join(found)}")
    return {d: found[d] for d in wanted}


def domain_weights(data: DictConfig) -> dict[str, float]:
    """The training mix (domain -> weight): the config's, or every text_dir subfolder equally."""
    if _source(data) == "text_dir" and not data.get("domains"):
        return {d: 1.0 for d in text_dir_domains(data)}
    return {str(k): v for k, v in dict(data.domains).items()}


def check_source(data: DictConfig) -> None:
    from balance_lab.data.builtin import DOMAINS

    source = _source(data)
    if source == "text_dir":
        text_dir_domains(data)
    weights = domain_weights(data)
    if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in weights.values()):
        raise ConfigError(f"data.domains={weights}: every weight must be a number > 0 and at least one domain is needed")
    if source == "builtin":
        unknown = sorted(set(weights) - set(DOMAINS))
        if unknown:
            raise ConfigError(f"data.domains: unknown domain(s) {', '.join(unknown)}; the built-in corpus has "
                              f"{', '.join(DOMAINS)}")


def _text_documents(domain: str, files: list[Path], root: Path) -> Iterator:
    from balance_lab.data.builtin import Document

    for path in files:
        text = path.read_text("utf-8", errors="replace")
        if text.strip():
            yield Document(f"{domain}:{path.relative_to(root).as_posix()}", text)


def load_splits(data: DictConfig) -> dict:
    """domain -> DomainSplit (train and validation token streams) for the config's domains."""
    from balance_lab.data.builtin import load_builtin_corpus, split_documents
    from balance_lab.data.tokenizer import ByteTokenizer

    weights = domain_weights(data)
    if _source(data) == "builtin":
        splits = load_builtin_corpus(data.cache_dir, data.val_fraction, data.math_documents, data.corpus_seed)
        return {d: splits[d] for d in weights}
    root = Path(str(data.path)).expanduser()
    tokenizer = ByteTokenizer()
    files = text_dir_domains(data)
    return {d: split_documents(_text_documents(d, files[d], root), data.val_fraction, tokenizer) for d in weights}
