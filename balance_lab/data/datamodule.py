"""Batches of fixed-length windows from per-domain token streams, each labelled with its domain.

Training: windows at random offsets, the domain drawn by the mix's weights, from the run's seed.
Validation: a fixed set (independent of seed and method) holding every domain in the training
mix's proportions, windows spread evenly over each domain's held-out stream, so perplexity and
MaxVio_global compare across runs.
"""

from __future__ import annotations

from typing import Mapping

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from balance_lab.data.types import DomainSplit
from balance_lab.errors import ConfigError


def proportional_counts(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split `total` by weight with the largest-remainder rule (the counts sum to total)."""
    names = list(weights)
    w = np.array([weights[n] for n in names], dtype=np.float64)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: total - counts.sum()]:
        counts[i] += 1
    return dict(zip(names, counts.tolist()))


class WindowDataset(Dataset):
    """Item i: tokens[offset_i : offset_i + seq_len + 1] of stream domain_i, as (inputs, targets)."""

    def __init__(self, streams: list[np.ndarray], domain_ids: np.ndarray, offsets: np.ndarray, seq_len: int):
        self.streams, self.domain_ids, self.offsets, self.seq_len = streams, domain_ids, offsets, seq_len

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d, o = int(self.domain_ids[i]), int(self.offsets[i])
        window = torch.from_numpy(self.streams[d][o : o + self.seq_len + 1].astype(np.int64))
        return {"tokens": window, "domain": torch.tensor(d)}


class RankSlice(Sampler[int]):
    """This rank's share of items [start, n): micro-batch m of rank r holds items
    (m*W + r)*B ... (m*W + r)*B + B-1, so the W ranks' m-th micro-batches together hold the same
    B*W consecutive items whatever W is, and a run resumed at micro-batch m starts exactly there.

    `len()` is the rank's share of all n items even when starting later: Lightning's loop counts
    the batches before a resume as already seen, and the epoch ends when this iterator does.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1, start_batch: int = 0):
        self.n, self.batch_size, self.rank, self.world, self.start_batch = n, batch_size, rank, world, start_batch

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world) * self.batch_size

    def __iter__(self):
        B, W = self.batch_size, self.world
        for m in range(self.start_batch, self.n // (B * W)):
            first = (m * W + self.rank) * B
            yield from range(first, first + B)


class Strided(Sampler[int]):
    """Items rank, rank + W, ...: every item on exactly one rank (no padding, unlike DistributedSampler)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1):
        self.indices = range(rank, n, world)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


GOLDEN = (5**0.5 - 1) / 2  # the Weyl sequence frac(i * GOLDEN) fills [0, 1) most evenly


def random_windows(lengths: list[int], weights: list[float], seq_len: int, n: int, seed: int):
    """Sample i depends on (seed, i) only, not on n: a longer run or more ranks extend the same stream.

    The domain of sample i follows a low-discrepancy sequence, the same for every seed: every stretch
    of training (every batch, the last steps before a validation) holds the domains in the mix's
    proportions to within a window or two. Drawn at random per window, the mix of the last steps
    varied from seed to seed and moved the final val ppl by several percent (docs/laptop-scale.md,
    "Seed noise"). Which window of the domain is taken is random, from the seed."""
    offsets_N = np.random.default_rng(seed).random((n, 2))[:, 1]  # column 0 was the domain draw (kept: same offsets)
    positions_N = (np.arange(1, n + 1, dtype=np.float64) * GOLDEN) % 1.0
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    domain_ids = np.minimum(np.searchsorted(cumulative / cumulative[-1], positions_N, side="right"), len(lengths) - 1)
    highs = np.asarray(lengths)[domain_ids] - seq_len - 1
    return domain_ids, (offsets_N * (highs + 1)).astype(np.int64)


def even_windows(lengths: list[int], counts: list[int], seq_len: int):
    domain_ids, offsets = [], []
    for d, (length, count) in enumerate(zip(lengths, counts)):
        domain_ids += [d] * count
        offsets += np.linspace(0, length - seq_len - 1, count).astype(np.int64).tolist()
    return np.asarray(domain_ids), np.asarray(offsets, dtype=np.int64)


class LMDataModule(L.LightningDataModule):
    def __init__(
        self,
        splits: Mapping[str, DomainSplit],
        weights: Mapping[str, float],
        seq_len: int,
        batch_size: int,
        val_sequences: int,
        num_train_samples: int,
        seed: int,
        bytes_per_token: float = 1.0,
    ):
        super().__init__()
        self.domains = list(weights)
        self.weights = [float(weights[d]) for d in self.domains]
        self.splits, self.seq_len, self.batch_size = splits, seq_len, batch_size
        self.val_counts = proportional_counts(weights, val_sequences)
        self.num_train_samples, self.seed, self.bytes_per_token = num_train_samples, seed, bytes_per_token
        for d in self.domains:
            for part in ("train", "val"):
                n = len(getattr(splits[d], part))
                if n < seq_len + 1:
                    raise ConfigError(f"domain {d!r} has {n} {part} tokens, fewer than one sequence of {seq_len + 1}")

    def train_dataloader(self) -> DataLoader:
        streams = [self.splits[d].train for d in self.domains]
        ids, offsets = random_windows(
            [len(s) for s in streams], self.weights, self.seq_len, self.num_train_samples, self.seed
        )
        rank, world = self._rank_and_world()
        # Training resumed from a checkpoint (taken at an optimizer-step boundary) continues with the next micro-batch.
        done = self.trainer.global_step * self.trainer.accumulate_grad_batches if self.trainer else 0
        sampler = RankSlice(len(offsets), self.batch_size, rank, world, start_batch=done)
        return DataLoader(
            WindowDataset(streams, ids, offsets, self.seq_len),
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            pin_memory=self._to_cuda(),
        )

    def val_dataloader(self) -> DataLoader:
        streams = [self.splits[d].val for d in self.domains]
        counts = [self.val_counts[d] for d in self.domains]
        ids, offsets = even_windows([len(s) for s in streams], counts, self.seq_len)
        rank, world = self._rank_and_world()
        return DataLoader(
            WindowDataset(streams, ids, offsets, self.seq_len),
            batch_size=self.batch_size,
            sampler=Strided(len(offsets), rank, world),
            pin_memory=self._to_cuda(),
        )

    def _to_cuda(self) -> bool:
        """Batches bound for a GPU are pinned: the copy to it then does not stall the host."""
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _rank_and_world(self) -> tuple[int, int]:
        # The samplers above split the data across ranks themselves (the Trainer runs with
        # use_distributed_sampler=False), so that a resumed run continues at the exact item.
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
