"""The built-in corpus: deterministic, split by document, fixed validation set."""

import os
import subprocess
import sys

import numpy as np
import pytest

from balance_lab.data.builtin import (
    DOMAINS,
    code_documents,
    domain_documents,
    is_validation,
    load_builtin_corpus,
    math_documents,
    split_documents,
)
from balance_lab.data.datamodule import LMDataModule, proportional_counts
from balance_lab.data.tokenizer import ByteTokenizer


@pytest.fixture(scope="module")
def corpus(corpus_cache):
    return load_builtin_corpus(corpus_cache)


def test_every_domain_has_train_and_validation_text(corpus):
    assert set(corpus) == set(DOMAINS)
    for split in corpus.values():
        assert split.n_train_docs > 10 * split.n_val_docs > 0
        assert split.train.dtype == np.uint8 and len(split.val) > 10_000


def test_validation_documents_never_appear_in_training(corpus):
    tok = ByteTokenizer()
    for domain, docs in (("math", math_documents(4000, 1234)), ("code", code_documents())):
        train = corpus[domain].train.tobytes()
        val_docs = [d for d in docs if is_validation(d.id, 0.05)]
        assert val_docs, domain
        for doc in val_docs:
            text = tok.encode(doc.text).tobytes()
            if len(text) > 64:  # a tiny file (e.g. a one-line __init__) may legitimately recur
                assert train.find(text) == -1, f"{doc.id} leaked into training"
            assert corpus[domain].val.tobytes().find(text) != -1


def test_split_depends_only_on_document_id():
    # The same split in processes with other string-hash salts (Python's hash() would differ there).
    code = (
        "from balance_lab.data.builtin import is_validation as v; "
        "print(''.join('1' if v(f'math:1234:{i}', 0.05) else '0' for i in range(400)))"
    )
    here = "".join("1" if is_validation(f"math:1234:{i}", 0.05) else "0" for i in range(400))
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert there.stdout.strip() == here
    assert "1" in here
    ids = [f"math:1234:{i}" for i in range(20_000)]
    fraction = sum(is_validation(i, 0.05) for i in ids) / len(ids)
    assert 0.04 < fraction < 0.06


def test_the_cache_holds_what_a_fresh_build_makes(corpus):
    # `corpus` is read from the cache the session built; math (the generated domain) built again here.
    fresh = split_documents(domain_documents("math", 4000, 1234), 0.05, ByteTokenizer())
    assert np.array_equal(fresh.train, corpus["math"].train)
    assert np.array_equal(fresh.val, corpus["math"].val)
    assert (fresh.n_train_docs, fresh.n_val_docs) == (corpus["math"].n_train_docs, corpus["math"].n_val_docs)


def test_proportional_counts_sum_and_follow_weights():
    assert proportional_counts({"code": 0.4, "prose": 0.4, "math": 0.2}, 96) == {"code": 39, "prose": 38, "math": 19}
    assert sum(proportional_counts({"a": 1, "b": 1, "c": 1}, 10).values()) == 10


def _datamodule(corpus, seed):
    weights = {"code": 0.4, "prose": 0.4, "math": 0.2}
    return LMDataModule(corpus, weights, seq_len=64, batch_size=8, val_sequences=30, num_train_samples=80, seed=seed)


def test_validation_set_is_fixed_and_mixed_by_weight(corpus):
    a, b = _datamodule(corpus, seed=0), _datamodule(corpus, seed=1)
    batches_a, batches_b = list(a.val_dataloader()), list(b.val_dataloader())
    for x, y in zip(batches_a, batches_b):
        assert (x["tokens"] == y["tokens"]).all() and (x["domain"] == y["domain"]).all()
    domains = np.concatenate([x["domain"].numpy() for x in batches_a])
    assert np.bincount(domains).tolist() == [12, 12, 6]


def test_training_windows_follow_the_seed(corpus):
    first = lambda seed: next(iter(_datamodule(corpus, seed).train_dataloader()))["tokens"]  # noqa: E731
    assert (first(0) == first(0)).all()
    assert not (first(0) == first(1)).all()
    assert first(0).shape == (8, 65)


@pytest.mark.parametrize("overrides, expected", [(["seed=3"], 3), (["seed=3", "data.order_seed=0"], 0)])
def test_data_order_seed_pins_the_windows_order_apart_from_the_seed(overrides, expected):
    from balance_lab.config.compose import compose_config
    from balance_lab.training.build import order_seed

    assert order_seed(compose_config(overrides)) == expected


def test_every_batch_holds_the_domain_mix_whatever_the_seed():
    """The domain of each window follows the mix evenly (not at random): a seed changes which windows
    are read, not how much of each domain a stretch of training sees (docs/laptop-scale.md)."""
    from balance_lab.data.datamodule import random_windows

    lengths, weights = [50_000, 50_000, 50_000], [0.4, 0.4, 0.2]
    ids_0, offsets_0 = random_windows(lengths, weights, 128, 4800, seed=0)
    ids_1, offsets_1 = random_windows(lengths, weights, 128, 4800, seed=1)
    assert (ids_0 == ids_1).all() and not (offsets_0 == offsets_1).all()
    for size in (16, 160, 480):  # a batch, 10 steps, 30 steps: each domain within 2 windows of its share
        for stretch in ids_0.reshape(-1, size):
            counts = np.bincount(stretch, minlength=3)
            assert all(abs(c - size * w) <= 2 for c, w in zip(counts, weights)), (size, counts)
    head = random_windows(lengths, weights, 128, 100, seed=0)  # a longer run extends the same stream
    assert (head[0] == ids_0[:100]).all() and (head[1] == offsets_0[:100]).all()
