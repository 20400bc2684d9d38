"""A folder of the user's text, one subfolder per domain, every text file below it a document (split
by a hash of its path, as the built-in corpus is); read as bytes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from balance_lab.data.sources.base import Progress, check_weights, configured_weights
from balance_lab.data.types import Document, DomainSplit
from balance_lab.errors import ConfigError

TEXT_EXTENSIONS = (".txt", ".md", ".rst", ".py", ".tex")  # conf/data/text_dir.yaml's default


class TextDir:
    def __init__(self, data: DictConfig):
        self.data = data
        self.root = Path(str(data.path)).expanduser()

    @functools.cached_property
    def found(self) -> dict[str, list[Path]]:
        """Subfolder -> its text files (the folder is walked once)."""
        if not self.root.is_dir():
            raise ConfigError(
                f"data.path={str(self.data.path)!r}: no such folder (a folder with one subfolder of text "
                "files per domain)"
            )
        suffixes = tuple(self.data.get("extensions") or TEXT_EXTENSIONS)
        found = {
            d.name: sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in suffixes)
            for d in sorted(self.root.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        }
        found = {name: files for name, files in found.items() if files}
        if not found:
            raise ConfigError(
                f"data.path={str(self.data.path)!r}: empty corpus, no subfolder holds a "
                f"{'/'.join(suffixes)} file (one subfolder per domain)"
            )
        return found

    @functools.cached_property
    def files(self) -> dict[str, list[Path]]:
        """domain -> its text files, for the domains the config asks for."""
        wanted = list(self.data.domains) if self.data.get("domains") else list(self.found)
        missing = [d for d in wanted if d not in self.found]
        if missing:
            raise ConfigError(
                f"data.domains: no text for {', '.join(missing)} under {self.data.path}; "
                f"domains found: {', '.join(self.found)}"
            )
        return {d: self.found[d] for d in wanted}

    def check(self) -> None:
        check_weights(self.domain_weights)
        self.files  # noqa: B018 - the configured domains exist

    @property
    def vocab_size(self) -> int:
        return 256

    @functools.cached_property
    def domain_weights(self) -> dict[str, float]:
        return configured_weights(self.data) or {d: 1.0 for d in self.files}

    @property
    def tokenizer_text(self) -> str:
        return f"data={self.data.get('name', 'text_dir')} (bytes)"

    @property
    def prepared(self) -> bool:
        return True

    def prepare(self, progress: Progress | None = None) -> None:
        pass

    def documents(self) -> dict:
        """domain -> a function yielding its Documents."""
        return {d: (lambda d=d: self._documents(d)) for d in self.files}

    def _documents(self, domain: str) -> Iterator[Document]:
        for path in self.files[domain]:
            text = path.read_text("utf-8", errors="replace")
            if text.strip():
                yield Document(f"{domain}:{path.relative_to(self.root).as_posix()}", text)

    def splits(self) -> dict[str, DomainSplit]:
        from balance_lab.data.builtin import split_documents
        from balance_lab.data.tokenizer import ByteTokenizer

        tokenizer = ByteTokenizer()
        return {d: split_documents(self._documents(d), self.data.val_fraction, tokenizer) for d in self.domain_weights}

    @property
    def bytes_per_token(self) -> float:
        return 1.0
