"""What every data source produces: documents (text with a stable id) and, per domain, the train and
validation token streams the DataModule samples windows from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Document:
    id: str  # stable across runs: the train/validation split is a hash of it
    text: str


@dataclass
class DomainSplit:
    train: np.ndarray  # token stream, documents joined by EOT
    val: np.ndarray
    n_train_docs: int
    n_val_docs: int
