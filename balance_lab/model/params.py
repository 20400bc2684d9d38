"""Parameter counts of a model, total and active per token, without allocating it (meta device)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from balance_lab.model.args import ModelArgs


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter (tied embeddings counted once)
    active: int  # parameters a single token passes through: shared + top-K of the routed experts
    embedding: int

    @property
    def active_non_embedding(self) -> int:
        return self.active - self.embedding


def train_flops_per_token(args: ModelArgs, counts: ParamCounts) -> int:
    """Training FLOPs per token (forward + backward), the PaLM appendix B estimate: 6 x the active
    matmul parameters (input embedding lookup excluded, output head included) + 12 x layers x
    d_model x seq_len for the attention scores and values."""
    matmul = counts.active - (0 if args.tie_embeddings else counts.embedding)
    return 6 * matmul + 12 * args.n_layers * args.d_model * args.seq_len


def count_params(args: ModelArgs) -> ParamCounts:
    from balance_lab.balancing import Balancer
    from balance_lab.model.lm import MoELM

    with torch.device("meta"):
        model = MoELM(args, make_balancer=lambda: Balancer([]))
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for layer in model.moe_layers for p in layer.experts.parameters())
    active = total - routed + routed * args.top_k // args.n_routed_experts
    return ParamCounts(total=total, active=active, embedding=model.embed.weight.numel())
