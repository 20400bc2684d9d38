"""Where a run's text comes from: the `data` config's source, checked and loaded.

- builtin:  the corpus made from this Python installation (balance_lab.data.builtin), as BPE
            tokens trained locally and cached (data.tokenizer=bpe, data/builtin_bpe.py) or bytes;
- text_dir: a folder of the user's text, one subfolder per domain, every text file below it a
            document (split by a hash of its path, as the built-in corpus is);
- tokens:   token files written by `balance-lab data tokenize` (BPE), memory-mapped (data/tokens.py);
- hf:       anything Hugging Face `datasets` reads (parquet, jsonl, arrow, ..., a hub dataset online),
            tokenised once into cached token files, then memory-mapped (data/hf/).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from balance_lab.errors import ConfigError

SOURCES = ("builtin", "text_dir", "tokens", "hf")
TOKENIZERS = ("bpe", "bytes")  # for the built-in corpus
TEXT_EXTENSIONS = (".txt", ".md", ".rst", ".py", ".tex")  # conf/data/text_dir.yaml's default


def _source(data: DictConfig) -> str:
    source = data.get("source", "builtin")
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r}: choose one of {', '.join(SOURCES)}")
    return source


def builtin_bpe(data: DictConfig) -> bool:
    """Whether this is the built-in corpus as BPE tokens (data.tokenizer=bpe) rather than bytes."""
    if _source(data) != "builtin":
        return False
    tokenizer = data.get("tokenizer", "bytes")
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"data.tokenizer={tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
    return tokenizer == "bpe"


@functools.lru_cache(maxsize=8)
def _scan(root: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Subfolder -> its text files (walked once per process: checks, weights and loading all ask)."""
    found = {d.name: sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in suffixes)
             for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    return {name: files for name, files in found.items() if files}


def text_dir_domains(data: DictConfig) -> dict[str, list[Path]]:
    """domain (subfolder name) -> its text files, for the domains the config asks for."""
    root = Path(str(data.path)).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.path={str(data.path)!r}: no such folder (a folder with one subfolder of text files per domain)")
    suffixes = tuple(data.extensions)
    found = _scan(root.resolve(), suffixes)
    if not found:
        raise ConfigError(f"data.path={str(data.path)!r}: empty corpus, no subfolder holds a {'/'.join(suffixes)} file "
                          "(one subfolder per domain)")
    wanted = list(data.domains) if data.get("domains") else list(found)
    missing = [d for d in wanted if d not in found]
    if missing:
        raise ConfigError(f"data.domains: no text for {', '.join(missing)} under {data.path}; "
                          f"domains found: {', '.join(found)}")
    return {d: found[d] for d in wanted}


def token_meta(data: DictConfig) -> dict:
    from balance_lab.data.tokens import read_meta

    try:
        return read_meta(Path(str(data.path)).expanduser())
    except FileNotFoundError as exc:
        raise ConfigError(f"data.path={str(data.path)!r}: no token files there (no {exc.args[0]}); "
                          "write them with: balance-lab data tokenize DIR") from exc


def domain_weights(data: DictConfig) -> dict[str, float]:
    """The training mix (domain -> weight): the config's, or every domain of the folder equally."""
    source = _source(data)
    if source == "hf":
        from balance_lab.data import hf
        from balance_lab.data.tokens import read_meta

        weights = hf.spec_of(data).weights  # null: every domain the corpus has, equally (read once it is tokenised)
        return weights or {d: 1.0 for d in read_meta(hf.ensure_token_dir(data))["domains"]}
    if not data.get("domains"):
        if source == "text_dir":
            return {d: 1.0 for d in text_dir_domains(data)}
        if source == "tokens":
            return {d: 1.0 for d in token_meta(data)["domains"]}
    return {str(k): v for k, v in dict(data.domains).items()}


def vocab_size(data: DictConfig) -> int:
    """The tokenizer's vocabulary: 256 (bytes), the built-in BPE's (data.vocab_size), the token files' or,
    for data=hf, data.vocab_size (a BPE trained on the corpus) or that of the tokenizer.json given."""
    if _source(data) == "hf":
        from balance_lab.data import hf

        return hf.vocab_size(data)
    if builtin_bpe(data):
        return int(data.vocab_size)
    return token_meta(data)["vocab_size"] if _source(data) == "tokens" else 256


def check_source(data: DictConfig) -> None:
    from balance_lab.data.builtin import DOMAINS

    source = _source(data)
    if source == "hf":
        from balance_lab.data import hf

        hf.check_reachable(hf.spec_of(data))  # fields, weights and paths; the datasets are opened when tokenising
        hf.tokenizer_spec(data)
        return
    weights = domain_weights(data)
    if source == "text_dir":
        text_dir_domains(data)  # the configured domains exist (the folder is scanned once)
    if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in weights.values()):
        raise ConfigError(f"data.domains={weights}: every weight must be a number > 0 and at least one domain is needed")
    if source == "tokens":
        known = token_meta(data)["domains"]
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise ConfigError(f"data.domains: no token files for {', '.join(unknown)} in {data.path}; it has {', '.join(known)}")
    if builtin_bpe(data) and (isinstance(data.vocab_size, bool) or not isinstance(data.vocab_size, int)
                              or not 257 <= data.vocab_size <= 2**20):
        raise ConfigError(f"data.vocab_size={data.vocab_size!r}: the built-in BPE needs 257 to 1048576 tokens "
                          "(it follows model.vocab_size; data.tokenizer=bytes for 256 byte values)")
    if source == "builtin":
        unknown = sorted(set(weights) - set(DOMAINS))
        if unknown:
            raise ConfigError(f"data.domains: unknown domain(s) {', '.join(unknown)}; the built-in corpus has "
                              f"{', '.join(DOMAINS)}")


def text_dir_documents(domain: str, files: list[Path], root: Path) -> Iterator:
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
    folder = token_folder(data)
    if folder is not None:
        from balance_lab.data.tokens import load_token_splits

        return load_token_splits(folder, list(weights))
    if _source(data) == "builtin":
        splits = load_builtin_corpus(data.cache_dir, data.val_fraction, data.math_documents, data.corpus_seed)
        return {d: splits[d] for d in weights}
    root = Path(str(data.path)).expanduser()
    tokenizer = ByteTokenizer()
    files = text_dir_domains(data)
    return {d: split_documents(text_dir_documents(d, files[d], root), data.val_fraction, tokenizer) for d in weights}


def bytes_per_token(data: DictConfig) -> float:
    """UTF-8 bytes per token of the validation text, for bits per byte (1 for bytes)."""
    from balance_lab.data.tokens import bytes_per_token as measured

    folder = token_folder(data)
    return 1.0 if folder is None else measured(folder, list(domain_weights(data)))


def token_folder(data: DictConfig) -> Path | None:
    """Where the run's token files are (built first where they are a cache), or None for bytes."""
    if builtin_bpe(data):
        from balance_lab.data.builtin_bpe import ensure_token_dir

        return ensure_token_dir(data)
    if _source(data) == "hf":
        from balance_lab.data import hf

        return hf.ensure_token_dir(data)
    return Path(str(data.path)).expanduser() if _source(data) == "tokens" else None


def corpus_documents(source: str, path: Path | None, max_documents: int | None = None) -> dict:
    """domain -> a function yielding its Documents, for `balance-lab data tokenize`: the built-in
    corpus (its default domains) or a text_dir folder; at most `max_documents` per domain."""
    import itertools

    from omegaconf import OmegaConf

    if source == "builtin":
        from balance_lab.data.builtin_bpe import builtin_makers

        makers = builtin_makers(OmegaConf.create({"math_documents": 4000, "corpus_seed": 1234}))
    elif source == "text_dir":
        if path is None:
            raise ConfigError("--source text_dir needs --path FOLDER (one subfolder of text files per domain)")
        data = OmegaConf.create({"source": "text_dir", "path": str(path), "domains": None,
                                 "extensions": list(TEXT_EXTENSIONS)})
        try:
            files = text_dir_domains(data)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("data.path=", "--path ")) from exc
        root = Path(path).expanduser()
        makers = {d: (lambda d=d: text_dir_documents(d, files[d], root)) for d in files}
    else:
        raise ConfigError(f"--source {source!r}: choose one of builtin, text_dir")
    if max_documents:
        makers = {d: (lambda make=make: itertools.islice(make(), max_documents)) for d, make in makers.items()}
    return makers
