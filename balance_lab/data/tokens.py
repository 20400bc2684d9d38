"""Token files: flat token arrays per domain and split, and the tokenizer that wrote them.

`balance-lab data tokenize OUT` (and the cache behind `data=hf` and the built-in BPE corpus) writes:

    OUT/tokenizer.json             Hugging Face `tokenizers` format: a byte-level BPE trained on the training
                                   documents, or the user's own (--tokenizer)
    OUT/<domain>.train.bin         the domain's training documents, tokenised and joined by EOT (uint16/uint32)
    OUT/<domain>.val.bin           its held-out documents
    OUT/meta.json                  vocabulary size, dtype, EOT id, tokens / documents / bytes per split

and `data=tokens data.path=OUT` memory-maps them (nothing is loaded into memory up front). The
flat arrays are what nanoGPT writes; one file per domain keeps the domain of every sequence.

Writing is one streaming pass over a corpus given as chunks (domain, split, texts): whatever the
source (built-in, a text folder, a Hugging Face dataset), the same bytes come out for the same
documents in the same order, with one process or several (data/encoding.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from balance_lab.errors import ConfigError

EOT_TOKEN = "<|endoftext|>"  # ours: token 0 of the BPE balance-lab trains
# A tokenizer.json of someone else's: its document separator, looked up by these names in this order
# (GPT-2 / NeoX / Qwen, Llama 3, Llama 2 / Mistral / T5, Gemma).
EOT_NAMES = (EOT_TOKEN, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]")
META = "meta.json"
DTYPES = ("auto", "uint16", "uint32")
SPLITS = ("train", "val")

Chunk = tuple[str, str, list[str]]  # (domain, split, texts): consecutive documents of one domain and split


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE with EOT as token 0, trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT_TOKEN],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: Path, what: str = "--tokenizer"):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(Path(path).expanduser()))
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{what} {path}: not a Hugging Face tokenizer.json ({reason})") from exc


def vocab_of(tokenizer) -> int:
    """Ids the model must embed: one past the largest id (added tokens included)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def find_eot(tokenizer, eot: str | None = None, what: str = "--tokenizer") -> str:
    """The token that separates documents: `eot` if given, else the first of EOT_NAMES it has."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    if eot is not None:
        if eot not in vocab:
            raise ConfigError(
                f"--eot (data.eot) {eot!r}: not a token of {what}; its special tokens: {_specials(tokenizer)}"
            )
        return eot
    for name in EOT_NAMES:
        if name in vocab:
            return name
    raise ConfigError(
        f"{what}: no end-of-text token ({', '.join(EOT_NAMES)}); name its separator with --eot "
        f"(data.eot); its special tokens: {_specials(tokenizer)}"
    )


def _specials(tokenizer) -> str:
    added = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special]
    return ", ".join(added[:12]) + (" ..." if len(added) > 12 else "") if added else "none"


def token_dtype(vocab_size: int, dtype: str = "auto") -> np.dtype:
    """uint16 up to 65,536 tokens, else uint32; a named dtype must hold every id."""
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)
    chosen = np.dtype(dtype)
    if vocab_size > np.iinfo(chosen).max + 1:
        raise ConfigError(
            f"--dtype {dtype}: holds ids below {np.iinfo(chosen).max + 1:,} but the vocabulary has "
            f"{vocab_size:,} tokens; use --dtype uint32 (or auto)"
        )
    return chosen


def file_stem(domain: str) -> str:
    """A domain's file name: the domain itself where it is a safe name (a column's values may not be)."""
    import hashlib

    safe = re.sub(r"[^\w.-]", "_", domain).strip(".") or "_"
    return safe if safe == domain else f"{safe}-{hashlib.sha1(domain.encode()).hexdigest()[:6]}"


class SplitWriter:
    """Appends encoded documents to one split's file and counts them."""

    def __init__(self, path: Path):
        self.file = open(path, "wb")
        self.stats = {"tokens": 0, "documents": 0, "bytes": 0}

    def write(self, ids: np.ndarray, documents: int, n_bytes: int) -> None:
        self.file.write(ids.tobytes())
        self.stats["tokens"] += len(ids)
        self.stats["documents"] += documents
        self.stats["bytes"] += n_bytes

    def close(self) -> dict[str, int]:
        self.file.close()
        return self.stats


def write_token_files(
    chunks: Iterable[Chunk],
    tokenizer,
    eot: str,
    out: Path,
    dtype: np.dtype,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Encodes every chunk into out/<domain>.<split>.bin (both splits' files exist for every domain seen)
    and returns meta.json's "domains" part; progress(documents, tokens) after each chunk."""
    from balance_lab.data.encoding import encoded

    writers: dict[str, dict[str, SplitWriter]] = {}
    documents = tokens = 0
    for domain, split, ids, n_docs, n_bytes in encoded(chunks, tokenizer, tokenizer.token_to_id(eot), dtype, workers):
        if domain not in writers:
            writers[domain] = {s: SplitWriter(out / f"{file_stem(domain)}.{s}.bin") for s in SPLITS}
        writers[domain][split].write(ids, n_docs, n_bytes)
        documents, tokens = documents + n_docs, tokens + len(ids)
        if progress is not None:
            progress(documents, tokens)
    # "file" only where the domain is not a safe file name itself (meta.json stays what it was otherwise).
    return {
        d: {**({"file": file_stem(d)} if file_stem(d) != d else {}), **{s: w.close() for s, w in ws.items()}}
        for d, ws in writers.items()
    }


def tokenize_chunks(
    make_chunks: Callable[[], Iterator[Chunk]],
    out: Path,
    vocab_size: int,
    tokenizer_path: Path | None = None,
    eot: str | None = None,
    dtype: str = "auto",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    on_trained: Callable[[], None] | None = None,
) -> dict:
    """Token files for a corpus: the tokenizer (tokenizer_path's, or a BPE of vocab_size tokens trained on the
    training texts: a first pass over make_chunks()), then one encoding pass. Writes out/meta.json last."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "tokenizer.json"
    if tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
        eot = find_eot(tokenizer, eot, f"tokenizer {tokenizer_path}")
    else:
        texts = (text for _, split, chunk in make_chunks() if split == "train" for text in chunk)
        tokenizer, eot = train_bpe(texts, vocab_size), EOT_TOKEN
    if on_trained is not None:
        on_trained()
    vocab = vocab_of(tokenizer)
    np_dtype = token_dtype(vocab, dtype)
    tokenizer.save(str(target))
    domains = write_token_files(make_chunks(), tokenizer, eot, out, np_dtype, workers, progress)
    meta = {
        "vocab_size": vocab,
        "dtype": np_dtype.name,
        "eot": tokenizer.token_to_id(eot),
        "eot_token": eot,
        "tokenizer": target.name,
        "domains": domains,
    }
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def document_chunks(
    documents: dict[str, Callable[[], Iterator]], is_val: Callable[[str], bool], size: int = 256
) -> Iterator[Chunk]:
    """Chunks from domain -> a function yielding Documents (id, text), the split by is_val(id)."""
    for domain, make in documents.items():
        pending: dict[str, list[str]] = {s: [] for s in SPLITS}
        for doc in make():
            split = "val" if is_val(doc.id) else "train"
            pending[split].append(doc.text)
            if len(pending[split]) == size:
                yield domain, split, pending[split]
                pending[split] = []
        for split in SPLITS:
            # Every domain gets its files even when a split is empty (the run then says which is empty).
            yield domain, split, pending[split]


def read_meta(path: Path) -> dict:
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise FileNotFoundError(meta_path)
    return json.loads(meta_path.read_text())


def load_token_splits(path: Path, domains: list[str]) -> dict:
    """domain -> DomainSplit of memory-mapped token arrays."""
    from balance_lab.data.types import DomainSplit

    meta = read_meta(path)
    splits = {}
    for d in domains:
        info = meta["domains"][d]
        arrays = {s: _map(Path(path) / f"{info.get('file', d)}.{s}.bin", meta["dtype"]) for s in SPLITS}
        splits[d] = DomainSplit(arrays["train"], arrays["val"], info["train"]["documents"], info["val"]["documents"])
    return splits


def _map(path: Path, dtype: str) -> np.ndarray:
    # An empty file cannot be memory-mapped; the data module then names the domain with too few tokens.
    return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype=dtype)


def bytes_per_token(path: Path, domains: list[str]) -> float:
    """UTF-8 bytes per token over the validation files (for bits per byte)."""
    meta = read_meta(path)
    val = [meta["domains"][d]["val"] for d in domains]
    return sum(v["bytes"] for v in val) / max(1, sum(v["tokens"] for v in val))
