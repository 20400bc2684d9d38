"""The built-in corpus as BPE tokens: the default of the CPU presets (`data.tokenizer=bytes` for bytes).

With 256 byte values, routing at initialisation follows the byte (every space goes to the same
experts) and a short run is spent escaping that start; the papers' models read a 32K BPE
vocabulary where no token fills a batch (docs/laptop-scale.md has the measurements). So the
built-in corpus is tokenised with a byte-level BPE of `data.vocab_size` tokens (the model
preset's vocabulary), trained locally with Hugging Face `tokenizers` on the training documents
the first time it is needed and cached beside the byte-level corpus:

    <cache_dir>/builtin-<corpus key>-bpe<V>/{tokenizer.json, meta.json, <domain>.<split>.bin}

Nothing is downloaded. Built once under a lock, the folder appearing whole (data/cache.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig


def token_dir(data: DictConfig) -> Path:
    from balance_lab.data.builtin import corpus_key

    key = corpus_key(data.val_fraction, data.math_documents, data.corpus_seed)
    return Path(str(data.cache_dir)).expanduser() / f"builtin-{key}-bpe{data.vocab_size}"


def builtin_makers(data: DictConfig) -> dict:
    """domain -> a function yielding its Documents, for the config's corpus (every domain)."""
    from balance_lab.data.builtin import DOMAINS, domain_documents

    return {d: (lambda d=d: domain_documents(d, data.math_documents, data.corpus_seed)) for d in DOMAINS}


def ensure_token_dir(data: DictConfig, progress=None) -> Path:
    """The cached token files of the built-in corpus at `data.vocab_size`, built on first use; with
    `progress` (data/sources/base.py: Progress) the CLI draws it, else two lines go to stderr."""
    from balance_lab.data.cache import ensure_built

    return ensure_built(token_dir(data), lambda tmp: _build(data, tmp, progress))


def _build(data: DictConfig, tmp: Path, progress) -> None:
    import time

    from balance_lab.data.builtin import is_validation
    from balance_lab.data.tokens import document_chunks, tokenize_chunks

    if progress is None:
        print(
            f"balance-lab: training a {data.vocab_size}-token BPE on the built-in corpus (once; cached in "
            f"{token_dir(data)}) ...",
            file=sys.stderr,
            flush=True,
        )
    else:
        progress.on_plan(None)
    started = time.perf_counter()
    # Read once (parsing the standard library is most of the time): training and encoding both walk it.
    documents = {domain: list(make()) for domain, make in builtin_makers(data).items()}  # ~15 MB of text
    makers = {domain: (lambda docs=docs: iter(docs)) for domain, docs in documents.items()}
    callbacks = {} if progress is None else {"progress": progress.progress, "on_trained": progress.on_trained}
    tokenize_chunks(
        lambda: document_chunks(makers, lambda doc_id: is_validation(doc_id, data.val_fraction)),
        tmp,
        int(data.vocab_size),
        **callbacks,
    )
    if progress is None:
        print(
            f"balance-lab: built-in corpus tokenised in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
