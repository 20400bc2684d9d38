"""The protocol every data source follows, and the checks they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from omegaconf import DictConfig

from balance_lab.data.types import DomainSplit
from balance_lab.errors import ConfigError


@dataclass(frozen=True)
class Progress:
    """Callbacks of a tokenisation (cli/tokenizing.py draws them): the number of documents once known
    (None: unknown), the BPE trained, then (documents, tokens) done so far."""

    on_plan: Callable[[int | None], None]
    on_trained: Callable[[], None]
    progress: Callable[[int, int], None]


class DataSource(Protocol):
    """Where a run's text comes from. Built once per config (data/sources/__init__.py: source_for);
    what it works out (folders scanned, token files' meta, cache keys) is kept on the instance."""

    data: DictConfig

    def check(self) -> None:
        """Every value, fast: nothing tokenised. Raises ConfigError with one line."""

    @property
    def vocab_size(self) -> int:
        """Token ids the model must embed."""

    @property
    def domain_weights(self) -> dict[str, float]:
        """The training mix (domain -> weight); the validation set keeps its proportions."""

    @property
    def tokenizer_text(self) -> str:
        """The tokenizer as an error message names it (`data.tokenizer=bytes`, a path, ...)."""

    @property
    def prepared(self) -> bool:
        """Whether prepare() has nothing left to do."""

    def prepare(self, progress: Progress | None = None) -> None:
        """Build what the source caches (token files), once; `progress` shows it."""

    def splits(self) -> dict[str, DomainSplit]:
        """domain -> its train and validation token streams, for the configured domains."""

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token of the validation text (bits per byte); 1 for bytes."""


def check_weights(weights: dict[str, float]) -> None:
    if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in weights.values()):
        raise ConfigError(
            f"data.domains={weights}: every weight must be a number > 0 and at least one domain is needed"
        )


def configured_weights(data: DictConfig) -> dict[str, float] | None:
    """data.domains as domain -> weight, None when the config leaves the mix to the corpus."""
    return {str(k): v for k, v in dict(data.domains).items()} if data.get("domains") else None


def check_known(weights: dict[str, float], known: list[str], where: str) -> None:
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigError(
            f"data.domains: no token files for {', '.join(unknown)} in {where}; it has {', '.join(known)}"
        )


def token_meta(path: Path, given: str) -> dict:
    from balance_lab.data.tokens import read_meta

    try:
        return read_meta(path)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"data.path={given!r}: no token files there (no {exc.args[0]}); "
            "write them with: balance-lab data tokenize DIR"
        ) from exc


class TokenFolder:
    """Splits and bits per byte of a source whose token files are in `self.token_dir` (built by
    `self.prepare()` where they are a cache): the built-in BPE, token files, Hugging Face corpora."""

    def splits(self) -> dict[str, DomainSplit]:
        from balance_lab.data.tokens import load_token_splits

        self.prepare()
        return load_token_splits(self.token_dir, list(self.domain_weights))

    @property
    def bytes_per_token(self) -> float:
        from balance_lab.data.tokens import bytes_per_token

        self.prepare()
        return bytes_per_token(self.token_dir, list(self.domain_weights))
