"""`data=hf`: anything Hugging Face `datasets` reads, tokenised once into cached token files, then
memory-mapped (the reading and tokenising are in data/hf/)."""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig

from balance_lab.data.sources.base import Progress, TokenFolder


class HuggingFace(TokenFolder):
    def __init__(self, data: DictConfig):
        self.data = data

    @functools.cached_property
    def spec(self):
        from balance_lab.data import hf

        return hf.spec_of(self.data)

    @functools.cached_property
    def tokenizer(self) -> str:
        """'bpe' (trained on the corpus) or the path of the tokenizer.json given (checked to exist)."""
        from balance_lab.data import hf

        return hf.tokenizer_spec(self.data)

    def check(self) -> None:
        from balance_lab.data import hf

        hf.check_reachable(self.spec)  # fields, weights and paths; the datasets are opened when tokenising
        self.tokenizer  # noqa: B018 - it exists

    @functools.cached_property
    def vocab_size(self) -> int:
        from balance_lab.data.tokens import load_tokenizer, vocab_of

        if self.tokenizer == "bpe":
            return int(self.data.vocab_size)
        return vocab_of(load_tokenizer(Path(self.tokenizer).expanduser(), f"data.tokenizer={self.tokenizer!r}:"))

    @functools.cached_property
    def domain_weights(self) -> dict[str, float]:
        """The config's weights, else every domain of the tokenised corpus equally (it is tokenised first)."""
        from balance_lab.data.tokens import read_meta

        if self.spec.weights:
            return self.spec.weights
        self.prepare()
        return {d: 1.0 for d in read_meta(self.token_dir)["domains"]}

    @property
    def tokenizer_text(self) -> str:
        return str(self.data.tokenizer)

    @property
    def trains_bpe(self) -> bool:
        return self.tokenizer == "bpe"

    @functools.cached_property
    def token_dir(self) -> Path:
        from balance_lab.data import hf

        return hf.token_dir(self.data, self.spec, self.tokenizer)

    @property
    def prepared(self) -> bool:
        from balance_lab.data.cache import READY

        return (self.token_dir / READY).is_file()

    def prepare(self, progress: Progress | None = None) -> None:
        from balance_lab.data import hf

        callbacks = (
            {}
            if progress is None
            else {"progress": progress.progress, "on_plan": progress.on_plan, "on_trained": progress.on_trained}
        )
        hf.ensure_token_dir(self.data, self.token_dir, **callbacks)
