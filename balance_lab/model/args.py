"""The shape of an MoE language model: one dataclass, filled from the `model` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

SCORE_FUNCS = ("sigmoid", "softmax")
DROP_POLICIES = ("probs", "position")  # which slots an over-capacity expert keeps (model/capacity.py)


@dataclass(frozen=True)
class ModelArgs:
    vocab_size: int = 256
    seq_len: int = 128  # longest sequence the position encoding is built for
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_dense_layers: int = 1  # the first N blocks use a dense FFN (DeepSeekMoE keeps layer 0 dense)
    dense_hidden: int = 512  # hidden width of those dense FFNs
    n_routed_experts: int = 16
    n_shared_experts: int = 1  # always-on experts, every token goes through them
    top_k: int = 4
    expert_hidden: int = 128  # hidden width of one (fine-grained) expert
    score_func: str = "sigmoid"  # router affinity: sigmoid | softmax
    norm_gates: bool = True  # renormalise the chosen experts' gates to sum to 1
    init_std: float = 0.02
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    activation_checkpointing: bool = False  # recompute each block's activations in backward (memory for time)

    def __post_init__(self) -> None:
        checks = [
            (
                self.score_func in SCORE_FUNCS,
                f"model.score_func={self.score_func!r}: choose one of {', '.join(SCORE_FUNCS)}",
            ),
            (
                1 <= self.top_k <= self.n_routed_experts,
                f"model.top_k={self.top_k}: must be between 1 and model.n_routed_experts={self.n_routed_experts}",
            ),
            (
                self.d_model % self.n_heads == 0,
                f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}",
            ),
            (
                (self.d_model // self.n_heads) % 2 == 0,
                f"model head size {self.d_model // self.n_heads} must be even (rotary embedding)",
            ),
            (
                0 <= self.n_dense_layers < self.n_layers,
                f"model.n_dense_layers={self.n_dense_layers}: must be between 0 and "
                f"model.n_layers - 1 = {self.n_layers - 1} (an MoE model needs at least one MoE layer)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ModelArgs":
        """Build from the `model` config group, ignoring its bookkeeping keys (name, ...)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(cfg).items() if k in known})

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers

    @property
    def moe_layer_ids(self) -> list[int]:
        """Block indices of the MoE layers (the `<i>` of the per-layer metric names)."""
        return list(range(self.n_dense_layers, self.n_layers))


@dataclass(frozen=True)
class RoutingArgs:
    """How the routers choose and drop, beyond top-K (model/selection.py, model/capacity.py).
    Filled from the `balance` config group, where each is one knob; the defaults switch all off."""

    jitter: float = 0.0  # router input noise x * U(1 - eps, 1 + eps) in training; 0 = off
    sinkhorn_iters: int = 0  # > 0: Sinkhorn selection in training, at most this many passes
    n_groups: int = 1  # expert groups for group-limited routing; 1 = plain top-K
    group_topk: int = 1  # groups each token may route into
    capacity_factor: float | None = None  # expert capacity C = ceil((T * K / E) * f) per forward; None = no dropping
    drop_policy: str = "probs"  # probs (keep the highest gates) | position (keep the earliest tokens)
    renorm_kept: bool = False  # rescale a token's kept gates to the sum of all K after dropping
    force_balance: bool = False  # each token's K experts drawn uniformly at random (the best case of balance)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "RoutingArgs":
        """Build from the `balance` config group, ignoring its other knobs."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(cfg).items() if k in known})

    def check(self, n_experts: int, top_k: int) -> None:
        """Raises ValueError naming the knob the model's shape rules out."""
        if self.n_groups < 1 or n_experts % self.n_groups:
            raise ValueError(
                f"balance.n_groups={self.n_groups}: must divide model.n_routed_experts={n_experts} (1 = no groups)"
            )
        per_group = n_experts // self.n_groups
        if not 1 <= self.group_topk <= self.n_groups:
            raise ValueError(
                f"balance.group_topk={self.group_topk}: must be between 1 and balance.n_groups={self.n_groups}"
            )
        if self.n_groups > 1 and self.group_topk * per_group < top_k:
            raise ValueError(
                f"balance.group_topk={self.group_topk}: {self.group_topk} group(s) of {per_group} experts "
                f"hold fewer than model.top_k={top_k}"
            )

    @property
    def grouped(self) -> bool:
        return self.n_groups > 1 and self.group_topk < self.n_groups
