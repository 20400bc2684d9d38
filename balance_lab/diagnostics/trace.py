"""A routing trace, on request (`diagnostics.trace_every=N`): for every N-th optimizer step (the first
sequences of its first micro-batch) and for every validation (sequences evenly spread over the
validation set, so every domain is in it), `tokens` tokens' K chosen experts and gates in every MoE
layer, with the token id, its domain, sequence and position. One
artifact per run, `loads/trace.parquet`, tidy: one row per (event, layer, token, choice).

A traced step moves its routing to the host (a sync on that step only; off by default). The
trace stops growing at `max_rows` rows, and is saved in checkpoints so a resumed run keeps it.
"""

from __future__ import annotations

import numpy as np
import torch

COLUMNS = ("split", "step", "layer", "sequence", "position", "token", "domain", "k", "expert", "gate")


class RoutingTrace:
    def __init__(self, layer_ids: list[int], domains: list[str], every: int, tokens: int, max_rows: int):
        self.layer_ids, self.domains = list(layer_ids), list(domains)
        self.every, self.tokens, self.max_rows = every, tokens, max_rows
        self.events: list[dict] = []  # each: split, step, and arrays of its traced tokens
        self.rows = 0
        self.full = False  # max_rows reached: nothing more is added

    def wants_step(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0 and not self.full

    def wants_validation(self, traced_so_far: int) -> bool:
        return self.every > 0 and traced_so_far < self.tokens and not self.full

    def add(
        self,
        split: str,
        step: int,
        tokens_BS: torch.Tensor,
        domain_B: torch.Tensor,
        experts_LTK: torch.Tensor,
        gates_LTK: torch.Tensor,
        limit: int | None = None,
        first_sequence: int = 0,
        stride: int = 1,
    ) -> int:
        """Trace up to min(limit, tokens) tokens of this batch: the sequences whose index
        (first_sequence + row) is a multiple of `stride`, whole, the last one cut at the limit;
        returns how many tokens were traced. `sequence` records that index."""
        B, S = tokens_BS.shape
        rows_b = [b for b in range(B) if (first_sequence + b) % stride == 0]
        n = min(len(rows_b) * S, self.tokens if limit is None else limit)
        n_layers, _, K = experts_LTK.shape
        if n <= 0:
            return 0
        if self.rows + n * n_layers * K > self.max_rows:
            self.full = True
            return 0
        rows_b = torch.tensor(rows_b, device=tokens_BS.device)
        token_T = (rows_b[:, None] * S + torch.arange(S, device=tokens_BS.device)).reshape(-1)[:n]  # flat ids
        self.events.append(
            {
                "split": split,
                "step": int(step),
                "sequence": (first_sequence + token_T // S).cpu().numpy().astype(np.int32),
                "position": (token_T % S).cpu().numpy().astype(np.int32),
                "token": tokens_BS.reshape(-1)[token_T].cpu().numpy().astype(np.int32),
                "domain": domain_B[token_T // S].cpu().numpy().astype(np.int16),
                "experts": experts_LTK[:, token_T].cpu().numpy().astype(np.int16),  # (L, n, K)
                "gates": gates_LTK[:, token_T].float().cpu().numpy(),  # (L, n, K)
            }
        )
        self.rows += n * n_layers * K
        return n

    def frame(self):
        """Tidy pandas frame, columns COLUMNS (domain as a category of the run's domain names)."""
        import pandas as pd

        parts = []
        for event in self.events:
            n_layers, n, K = event["experts"].shape
            per_layer = n * K
            parts.append(
                pd.DataFrame(
                    {
                        "split": event["split"],
                        "step": np.int64(event["step"]),
                        "layer": np.repeat(np.asarray(self.layer_ids, dtype=np.int16), per_layer),
                        "sequence": np.tile(np.repeat(event["sequence"], K), n_layers),
                        "position": np.tile(np.repeat(event["position"], K), n_layers),
                        "token": np.tile(np.repeat(event["token"], K), n_layers),
                        "domain": np.tile(np.repeat(event["domain"], K), n_layers),
                        "k": np.tile(np.arange(K, dtype=np.int8), n_layers * n),
                        "expert": event["experts"].reshape(-1),
                        "gate": event["gates"].reshape(-1),
                    }
                )
            )
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COLUMNS))
        frame["split"] = frame["split"].astype("category")
        frame["domain"] = pd.Categorical.from_codes(frame["domain"].astype(np.int64), categories=self.domains)
        return frame[list(COLUMNS)]

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        events = [
            {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in event.items()}
            for event in self.events
        ]
        return {"events": events, "rows": self.rows, "full": self.full}

    def load_state_dict(self, state: dict) -> None:
        as_numpy = lambda v: v.numpy() if isinstance(v, torch.Tensor) else v  # noqa: E731
        self.events = [{k: as_numpy(v) for k, v in event.items()} for event in state["events"]]
        self.rows, self.full = int(state["rows"]), bool(state["full"])
