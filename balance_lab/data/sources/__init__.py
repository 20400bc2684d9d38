"""Where a run's text comes from: one class per `data.source` kind behind one protocol (base.py),
chosen here and nowhere else.

- builtin:  the corpus made from this Python installation, as a BPE trained locally and cached
            (data.tokenizer=bpe) or as bytes (sources/builtin.py);
- text_dir: a folder of the user's text, one subfolder per domain, read as bytes (sources/text_dir.py);
- tokens:   token files written by `balance-lab data tokenize`, memory-mapped (sources/token_files.py);
- hf:       anything Hugging Face `datasets` reads, tokenised once into cached token files (sources/hf.py).

The registry keys are the `data.source` values of conf/data/*.yaml (not Hydra `_target_`s, so the
config hashes of finished runs stay as they were).
"""

from __future__ import annotations

from omegaconf import DictConfig

from balance_lab.data.sources.base import DataSource, Progress
from balance_lab.data.sources.builtin import builtin_source
from balance_lab.data.sources.hf import HuggingFace
from balance_lab.data.sources.text_dir import TEXT_EXTENSIONS, TextDir
from balance_lab.data.sources.token_files import TokenFiles
from balance_lab.errors import ConfigError

__all__ = ["DataSource", "Progress", "SOURCES", "TEXT_EXTENSIONS", "source_for"]

SOURCES = {"builtin": builtin_source, "text_dir": TextDir, "tokens": TokenFiles, "hf": HuggingFace}


def source_for(data: DictConfig) -> DataSource:
    """The source object of a `data` config (one per config: it keeps what it works out)."""
    kind = data.get("source", "builtin")
    if kind not in SOURCES:
        raise ConfigError(f"data.source={kind!r}: choose one of {', '.join(SOURCES)}")
    return SOURCES[kind](data)
