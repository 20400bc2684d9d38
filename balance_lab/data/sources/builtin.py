"""The built-in corpus (made from this Python installation, data/builtin.py), as bytes or as a BPE
trained locally and cached (data/builtin_bpe.py)."""

from __future__ import annotations

import functools

from omegaconf import DictConfig

from balance_lab.data.sources.base import Progress, TokenFolder, check_weights, configured_weights
from balance_lab.data.types import DomainSplit
from balance_lab.errors import ConfigError

TOKENIZERS = ("bpe", "bytes")
DEFAULT_TOKENIZER = "bpe"  # conf/data/builtin.yaml's


class BuiltinBytes:
    """The built-in corpus as 256 byte values."""

    def __init__(self, data: DictConfig):
        self.data = data

    def check(self) -> None:
        from balance_lab.data.builtin import DOMAINS

        check_weights(self.domain_weights)
        unknown = sorted(set(self.domain_weights) - set(DOMAINS))
        if unknown:
            raise ConfigError(
                f"data.domains: unknown domain(s) {', '.join(unknown)}; the built-in corpus has {', '.join(DOMAINS)}"
            )

    @property
    def vocab_size(self) -> int:
        return 256

    @functools.cached_property
    def domain_weights(self) -> dict[str, float]:
        return configured_weights(self.data) or {}

    @property
    def tokenizer_text(self) -> str:
        return "data.tokenizer=bytes"

    @property
    def prepared(self) -> bool:
        return True  # a few seconds of building, in the training process, on first use

    def prepare(self, progress: Progress | None = None) -> None:
        pass

    def documents(self) -> dict:
        """domain -> a function yielding its Documents (every domain of the corpus)."""
        from balance_lab.data.builtin_bpe import builtin_makers

        return builtin_makers(self.data)

    def splits(self) -> dict[str, DomainSplit]:
        from balance_lab.data.builtin import load_builtin_corpus

        data = self.data
        splits = load_builtin_corpus(data.cache_dir, data.val_fraction, data.math_documents, data.corpus_seed)
        return {d: splits[d] for d in self.domain_weights}

    @property
    def bytes_per_token(self) -> float:
        return 1.0


class BuiltinBPE(TokenFolder, BuiltinBytes):
    """The built-in corpus as a byte-level BPE of data.vocab_size tokens, trained on first use and cached."""

    def check(self) -> None:
        super().check()
        size = self.data.vocab_size
        if isinstance(size, bool) or not isinstance(size, int) or not 257 <= size <= 2**20:
            raise ConfigError(
                f"data.vocab_size={size!r}: the built-in BPE needs 257 to 1048576 tokens "
                "(it follows model.vocab_size; data.tokenizer=bytes for 256 byte values)"
            )

    @property
    def vocab_size(self) -> int:
        return int(self.data.vocab_size)

    @property
    def tokenizer_text(self) -> str:
        return f"the built-in {self.vocab_size}-token BPE"

    @property
    def trains_bpe(self) -> bool:
        return True

    @functools.cached_property
    def token_dir(self):
        from balance_lab.data.builtin_bpe import token_dir

        return token_dir(self.data)

    @property
    def prepared(self) -> bool:
        from balance_lab.data.cache import READY

        return (self.token_dir / READY).is_file()

    def prepare(self, progress: Progress | None = None) -> None:
        from balance_lab.data.builtin_bpe import ensure_token_dir

        ensure_token_dir(self.data, progress)


def builtin_source(data: DictConfig) -> BuiltinBytes:
    tokenizer = data.get("tokenizer", DEFAULT_TOKENIZER)
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"data.tokenizer={tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
    return BuiltinBPE(data) if tokenizer == "bpe" else BuiltinBytes(data)
