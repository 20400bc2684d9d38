"""Every optimizer step's tokens per MoE layer and routed expert: the counts the loss-free update
already has (summed over the step's micro-batches and all-reduced once), kept without a pass or a
host-device sync of their own, for the run's artifact `loads/steps.parquet`.

The counts stay on the device until the next step whose metrics are logged (that step's transfer
brings them over: lit_module.py), a checkpoint or a validation. On the host, one row per layer
holds one step; once `max_rows` rows are kept, adjacent rows merge pairwise (a row then sums 2,
then 4, ... consecutive steps), so the artifact has at most `max_rows` rows per layer however
long the run, and the sum over its rows is still every routed slot of the run. The history is
saved in checkpoints: a resumed run continues it without a gap or a repeated step.
"""

from __future__ import annotations

import numpy as np
import torch

# The artifact's columns: one row per (run of steps, layer, expert).
COLUMNS = ("step", "steps", "layer", "expert", "tokens")


class LoadHistory:
    def __init__(self, layer_ids: list[int], n_experts: int, max_rows: int = 2048):
        self.layer_ids, self.max_rows = list(layer_ids), max_rows
        n_layers = len(layer_ids)
        self.first_R = np.zeros(max_rows, dtype=np.int64)  # first optimizer step (1-based) each row sums
        self.steps_R = np.zeros(max_rows, dtype=np.int64)  # how many consecutive steps it sums
        self.counts_RLE = np.zeros((max_rows, n_layers, n_experts), dtype=np.int64)
        self.rows = 0
        self.span = 1  # steps a full row sums now: doubles each time the rows merge
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, counts_LE on the device) not yet on the host

    def record(self, step: int, counts_LE: torch.Tensor) -> None:
        """The step's all-reduced counts (a tensor nothing writes to again); no transfer here."""
        self.pending.append((step, counts_LE))

    def take_pending(self) -> tuple[list[int], torch.Tensor | None]:
        """The pending steps and their counts as one (n, L, E) device tensor, for a caller that moves
        them with its own transfer and hands them back to `add`."""
        if not self.pending:
            return [], None
        steps = [step for step, _ in self.pending]
        stacked = torch.stack([counts for _, counts in self.pending])
        self.pending.clear()
        return steps, stacked

    def flush(self) -> None:
        steps, stacked = self.take_pending()
        if stacked is not None:
            self.add(steps, stacked.cpu().numpy())

    def add(self, steps: list[int], counts_NLE: np.ndarray) -> None:
        for step, counts_LE in zip(steps, np.asarray(counts_NLE, dtype=np.int64)):
            self._add_step(int(step), counts_LE)

    def _add_step(self, step: int, counts_LE: np.ndarray) -> None:
        last = self.rows - 1
        if last >= 0 and self.first_R[last] + self.steps_R[last] > step:
            raise ValueError(f"load history: step {step} recorded again (rows reach step {self._end() - 1})")
        if last >= 0 and self.steps_R[last] < self.span and self.first_R[last] + self.steps_R[last] == step:
            self.counts_RLE[last] += counts_LE
            self.steps_R[last] += 1
            return
        if self.rows == self.max_rows:
            self._merge_pairs()
            return self._add_step(step, counts_LE)
        self.first_R[self.rows], self.steps_R[self.rows], self.counts_RLE[self.rows] = step, 1, counts_LE
        self.rows += 1

    def _merge_pairs(self) -> None:
        """Rows 2i and 2i+1 become row i (an odd last row stays alone); a full row now sums 2x the steps."""
        n, pairs = self.rows, self.rows // 2
        merged_first = self.first_R[0 : 2 * pairs : 2].copy()
        merged_steps = self.steps_R[0 : 2 * pairs].reshape(pairs, 2).sum(axis=1)
        merged_counts = self.counts_RLE[0 : 2 * pairs].reshape(pairs, 2, *self.counts_RLE.shape[1:]).sum(axis=1)
        if n % 2:
            merged_first = np.append(merged_first, self.first_R[n - 1])
            merged_steps = np.append(merged_steps, self.steps_R[n - 1])
            merged_counts = np.concatenate([merged_counts, self.counts_RLE[n - 1 : n]])
        self.rows = len(merged_first)
        self.first_R[: self.rows], self.steps_R[: self.rows], self.counts_RLE[: self.rows] = (
            merged_first,
            merged_steps,
            merged_counts,
        )
        self.first_R[self.rows :], self.steps_R[self.rows :], self.counts_RLE[self.rows :] = 0, 0, 0
        self.span *= 2

    def _end(self) -> int:
        return int(self.first_R[self.rows - 1] + self.steps_R[self.rows - 1]) if self.rows else 1

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor | int]:
        self.flush()
        n = self.rows
        return {
            "first_R": torch.from_numpy(self.first_R[:n].copy()),
            "steps_R": torch.from_numpy(self.steps_R[:n].copy()),
            "counts_RLE": torch.from_numpy(self.counts_RLE[:n].copy()),
            "span": self.span,
        }

    def load_state_dict(self, state: dict) -> None:
        n = len(state["first_R"])
        if n > self.max_rows or tuple(state["counts_RLE"].shape[1:]) != self.counts_RLE.shape[1:]:
            raise ValueError(
                f"load history: the checkpoint's {n} rows of shape {tuple(state['counts_RLE'].shape[1:])} do not fit "
                f"{self.max_rows} rows of {self.counts_RLE.shape[1:]}"
            )
        self.pending.clear()
        self.rows, self.span = n, int(state["span"])
        self.first_R[:n], self.steps_R[:n] = state["first_R"].numpy(), state["steps_R"].numpy()
        self.counts_RLE[:n] = state["counts_RLE"].numpy()

    # ---- the artifact ------------------------------------------------------------------
    def frame(self):
        """Tidy pandas frame: one row per (step range, layer, expert), columns COLUMNS."""
        import pandas as pd

        self.flush()
        n, (n_layers, n_experts) = self.rows, self.counts_RLE.shape[1:]
        per_row = n_layers * n_experts
        return pd.DataFrame(
            {
                "step": np.repeat(self.first_R[:n], per_row),
                "steps": np.repeat(self.steps_R[:n], per_row).astype(np.int32),
                "layer": np.tile(np.repeat(np.asarray(self.layer_ids, dtype=np.int16), n_experts), n),
                "expert": np.tile(np.arange(n_experts, dtype=np.int16), n * n_layers),
                "tokens": self.counts_RLE[:n].reshape(-1),
            },
            columns=list(COLUMNS),
        )


def read(path) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray]:
    """A `loads/steps.parquet` as arrays: (first step per row (R,), steps per row (R,), layer ids,
    counts (R, L, E)). Raises ValueError for a file that is not one."""
    import pandas as pd

    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a load history (no column {missing[0]!r})")
    frame = frame.sort_values(["step", "layer", "expert"])
    layer_ids = sorted(frame["layer"].unique().tolist())
    n_experts = int(frame["expert"].max()) + 1
    per_row = len(layer_ids) * n_experts
    if len(frame) % per_row:
        shape = f"{len(layer_ids)} layers x {n_experts} experts"
        raise ValueError(f"{path}: {len(frame)} rows are not whole steps of {shape}")
    first = frame["step"].to_numpy()[::per_row]
    steps = frame["steps"].to_numpy()[::per_row]
    counts = frame["tokens"].to_numpy().reshape(-1, len(layer_ids), n_experts)
    return first, steps, layer_ids, counts
