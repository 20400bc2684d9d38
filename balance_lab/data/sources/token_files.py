"""Token files written by `balance-lab data tokenize` (BPE), memory-mapped (data/tokens.py)."""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig

from balance_lab.data.sources.base import (
    Progress,
    TokenFolder,
    check_known,
    check_weights,
    configured_weights,
    token_meta,
)


class TokenFiles(TokenFolder):
    def __init__(self, data: DictConfig):
        self.data = data
        self.path = self.token_dir = Path(str(data.path)).expanduser()

    @functools.cached_property
    def meta(self) -> dict:
        return token_meta(self.path, str(self.data.path))

    def check(self) -> None:
        check_weights(self.domain_weights)
        check_known(self.domain_weights, list(self.meta["domains"]), str(self.data.path))

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @functools.cached_property
    def domain_weights(self) -> dict[str, float]:
        return configured_weights(self.data) or {d: 1.0 for d in self.meta["domains"]}

    @property
    def tokenizer_text(self) -> str:
        return f"the tokenizer of {self.data.path}"

    @property
    def prepared(self) -> bool:
        return True

    def prepare(self, progress: Progress | None = None) -> None:
        pass
