"""Token files for large runs: a BPE tokenizer trained locally, and flat token arrays per domain.

`balance-lab data tokenize OUT` writes, from the built-in corpus or a text_dir folder:

    OUT/tokenizer.json             byte-level BPE (Hugging Face `tokenizers`), trained on the training documents
    OUT/<domain>.train.bin         the domain's training documents, tokenised and joined by EOT (uint16/uint32)
    OUT/<domain>.val.bin           its held-out documents (split by a hash of the document id)
    OUT/meta.json                  vocabulary size, dtype, EOT id, tokens / documents / bytes per split

and `data=tokens data.path=OUT` memory-maps them (nothing is loaded into memory up front). The
flat arrays are what nanoGPT writes; one file per domain keeps the domain of every sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

EOT_TOKEN = "<|endoftext|>"
META = "meta.json"


@dataclass
class TokenizeResult:
    out: Path
    vocab_size: int
    tokens: dict[str, dict[str, int]]  # domain -> split -> tokens


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE with EOT as token 0, trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


class SplitWriter:
    """Appends documents' tokens (each followed by EOT) to one split's file, encoding in batches."""

    def __init__(self, tokenizer, path: Path, dtype: np.dtype, batch: int = 256):
        self.tokenizer, self.dtype, self.batch = tokenizer, dtype, batch
        self.eot = tokenizer.token_to_id(EOT_TOKEN)
        self.file = open(path, "wb")
        self.pending: list[str] = []
        self.stats = {"tokens": 0, "documents": 0, "bytes": 0}

    def add(self, text: str) -> None:
        self.pending.append(text)
        if len(self.pending) == self.batch:
            self._flush()

    def _flush(self) -> None:
        for encoding in self.tokenizer.encode_batch(self.pending):
            ids = np.asarray(encoding.ids + [self.eot], dtype=self.dtype)
            self.file.write(ids.tobytes())
            self.stats["tokens"] += len(ids)
        self.stats["bytes"] += sum(len(t.encode("utf-8")) + 1 for t in self.pending)  # +1: EOT stands for a separator
        self.stats["documents"] += len(self.pending)
        self.pending = []

    def close(self) -> dict[str, int]:
        if self.pending:
            self._flush()
        self.file.close()
        return self.stats


def encode_domain(tokenizer, docs: Iterable, is_val: Callable[[str], bool], out: Path, domain: str,
                  dtype: np.dtype) -> dict[str, dict[str, int]]:
    """One streaming pass over a domain's documents into <domain>.train.bin and <domain>.val.bin."""
    writers = {split: SplitWriter(tokenizer, out / f"{domain}.{split}.bin", dtype) for split in ("train", "val")}
    for doc in docs:
        writers["val" if is_val(doc.id) else "train"].add(doc.text)
    return {split: writer.close() for split, writer in writers.items()}


def tokenize_corpus(documents: dict[str, Callable[[], Iterator]], is_val: Callable[[str], bool], out: Path,
                    vocab_size: int, tokenizer_path: Path | None = None, progress=None) -> TokenizeResult:
    """documents: domain -> a function yielding its Documents (id, text); trains (or reuses) the
    tokenizer on the training documents, then writes every domain's train/val token files."""
    from tokenizers import Tokenizer

    out.mkdir(parents=True, exist_ok=True)
    target = out / "tokenizer.json"
    if tokenizer_path is None and target.is_file() and Tokenizer.from_file(str(target)).get_vocab_size() == vocab_size:
        tokenizer_path = target  # trained before into this folder: the cache (--retrain to train again)
    if tokenizer_path is not None:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    else:
        def training_texts():
            for make in documents.values():
                yield from (d.text for d in make() if not is_val(d.id))

        tokenizer = train_bpe(training_texts(), vocab_size)
    tokenizer.save(str(target))
    vocab, dtype = tokenizer.get_vocab_size(), _dtype(tokenizer.get_vocab_size())
    meta = {"vocab_size": vocab, "dtype": dtype.name, "eot": tokenizer.token_to_id(EOT_TOKEN), "tokenizer": target.name,
            "domains": {}}
    for domain, make in documents.items():
        meta["domains"][domain] = encode_domain(tokenizer, make(), is_val, out, domain, dtype)
        if progress is not None:
            progress(domain, {split: info["tokens"] for split, info in meta["domains"][domain].items()})
    (out / META).write_text(json.dumps(meta, indent=2))
    return TokenizeResult(out, vocab, {d: {s: v["tokens"] for s, v in m.items()} for d, m in meta["domains"].items()})


def read_meta(path: Path) -> dict:
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise FileNotFoundError(meta_path)
    return json.loads(meta_path.read_text())


def load_token_splits(path: Path, domains: list[str]) -> dict:
    """domain -> DomainSplit of memory-mapped token arrays."""
    from balance_lab.data.builtin import DomainSplit

    meta = read_meta(path)
    splits = {}
    for d in domains:
        arrays = {s: np.memmap(Path(path) / f"{d}.{s}.bin", dtype=meta["dtype"], mode="r") for s in ("train", "val")}
        info = meta["domains"][d]
        splits[d] = DomainSplit(arrays["train"], arrays["val"], info["train"]["documents"], info["val"]["documents"])
    return splits


def bytes_per_token(path: Path, domains: list[str]) -> float:
    """UTF-8 bytes per token over the validation files (for bits per byte)."""
    meta = read_meta(path)
    val = [meta["domains"][d]["val"] for d in domains]
    return sum(v["bytes"] for v in val) / max(1, sum(v["tokens"] for v in val))
