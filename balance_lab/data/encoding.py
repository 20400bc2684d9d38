"""Encoding chunks of documents into token arrays, in this process or in several.

One process: `tokenizers` encodes a batch with its own Rust threads. Several (`workers` > 1): the
chunks go to a pool of spawned processes, each with its own copy of the tokenizer, and come back
in order, so the files are the same bytes whatever the number of workers. At most 2 chunks per
worker are in flight: a corpus larger than memory streams through.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

import numpy as np

Encoded = tuple[str, str, np.ndarray, int, int]  # domain, split, ids (EOT after each document), documents, bytes


MAX_BATCH_CHARS = 1 << 20  # text per encode_batch call: its Encoding objects cost ~100 bytes per token


def encode_texts(tokenizer, texts: list[str], eot_id: int, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """The documents' ids, each followed by EOT, and their UTF-8 size (+1 per EOT: it stands for a separator)."""
    eot = np.array([eot_id], dtype=dtype)
    parts: list[np.ndarray] = []
    for batch in _by_size(texts):
        # add_special_tokens=False: a pretrained tokenizer's post-processor would add BOS/EOS of its own.
        for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
            parts += [np.asarray(encoding.ids, dtype=dtype), eot]
    n_bytes = sum(len(t.encode("utf-8")) + 1 for t in texts)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)), n_bytes


def _by_size(texts: list[str]) -> Iterator[list[str]]:
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= MAX_BATCH_CHARS:
            yield texts[start : i + 1]
            start, size = i + 1, 0
    if start < len(texts):
        yield texts[start:]


def encoded(
    chunks: Iterable[tuple[str, str, list[str]]], tokenizer, eot_id: int, dtype: np.dtype, workers: int = 1
) -> Iterator[Encoded]:
    if workers <= 1:
        for domain, split, texts in chunks:
            ids, n_bytes = encode_texts(tokenizer, texts, eot_id, dtype)
            yield domain, split, ids, len(texts), n_bytes
        return
    yield from _in_pool(chunks, tokenizer.to_str(), eot_id, dtype, workers)


def _in_pool(chunks, tokenizer_json: str, eot_id: int, dtype: np.dtype, workers: int) -> Iterator[Encoded]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child of a process whose tokenizers threads already ran turns them off
    # with a warning, and a training process has torch's threads as well.
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_load,
        initargs=(tokenizer_json, eot_id, dtype.str),
    ) as pool:
        pending: deque = deque()
        for domain, split, texts in chunks:
            pending.append((domain, split, len(texts), pool.submit(_encode, texts)))
            if len(pending) >= 2 * workers:
                yield _collect(pending.popleft())
        while pending:
            yield _collect(pending.popleft())


def _collect(item) -> Encoded:
    domain, split, documents, future = item
    ids, n_bytes = future.result()
    return domain, split, ids, documents, n_bytes


_worker: dict = {}


def _load(tokenizer_json: str, eot_id: int, dtype: str) -> None:
    import os

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    from tokenizers import Tokenizer

    _worker.update(tokenizer=Tokenizer.from_str(tokenizer_json), eot_id=eot_id, dtype=np.dtype(dtype))


def _encode(texts: list[str]) -> tuple[np.ndarray, int]:
    return encode_texts(_worker["tokenizer"], texts, _worker["eot_id"], _worker["dtype"])
