"""A run of a few steps (what most tests train) and the metrics every run must record."""

from __future__ import annotations


def short_run(steps: int | None = 6, val_every: int = 3, val_sequences: int = 12) -> list[str]:
    """Overrides for a run of `steps` optimizer steps on 4 sequences (steps=None: the caller sets
    trainer.max_steps, e.g. as a swept value), validating every `val_every` steps on a small set."""
    steps_override = [f"trainer.max_steps={steps}"] if steps is not None else []
    return [
        *steps_override,
        f"trainer.val_check_interval={val_every}",
        "trainer.log_every_n_steps=2",
        "data.batch_size=4",
        f"data.val_sequences={val_sequences}",
    ]


SHORT_RUN = short_run()

# A run long enough to be interrupted, stopped or cut off from its store while it trains.
LONG = [
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.val_sequences=12",
    "trainer.enable_progress_bar=false",
]


# A small model on byte tokens, for tests that need a run to be interrupted, resumed or stopped rather
# than a model that learns: a third of the tiny preset's step time, the same code paths.
SMALL = [
    "data.tokenizer=bytes",
    "model.vocab_size=256",
    "model.n_layers=2",
    "model.n_routed_experts=8",
    "model.top_k=2",
]

# The metric contract (docs/metrics.md): every finished run has these.
CONTRACT_METRICS = [
    "train/loss",
    "train/lm_loss",
    "train/aux_loss",
    "train/maxvio_batch",
    "train/maxvio_compute_batch",
    "train/maxvio_batch_mean",
    "train/maxvio_compute_batch_mean",
    "val/loss",
    "val/ppl",
    "val/bpb",
    "val/maxvio_global",
]
