"""A decoder-only transformer LM whose FFNs are DeepSeekMoE layers (the first few may be dense).

Read top to bottom: Block (attention + FFN or MoE), then MoELM (embedding, blocks, head).
The LM returns logits, the summed balancing loss of its MoE layers and the per-layer routing
counts; it keeps no counters itself, so evaluation can never disturb training state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from balance_lab.model.args import ModelArgs, RoutingArgs
from balance_lab.model.attention import CausalSelfAttention
from balance_lab.model.experts import DenseFFN
from balance_lab.model.moe import MoELayer


@dataclass
class LMOutput:
    logits_BSV: torch.Tensor
    aux_loss: torch.Tensor  # sum of the MoE layers' balancing losses (0 in eval)
    counts_LBE: torch.Tensor  # routed slots per MoE layer, sequence and expert (int64)
    dropped_L: torch.Tensor  # slots dropped at expert capacity per MoE layer (int64; zeros without a capacity)
    experts_LTK: torch.Tensor | None = None  # with trace=True: each token's chosen experts per MoE layer
    gates_LTK: torch.Tensor | None = None  # and their gates (detached)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, moe: bool, make_balancer: Callable[[], nn.Module], routing: RoutingArgs):
        super().__init__()
        self.attn_norm = nn.RMSNorm(args.d_model)
        self.attn = CausalSelfAttention(args.d_model, args.n_heads, args.seq_len, args.rope_theta)
        self.ffn_norm = nn.RMSNorm(args.d_model)
        if moe:
            self.ffn = MoELayer(
                args.d_model,
                args.n_routed_experts,
                args.n_shared_experts,
                args.top_k,
                args.expert_hidden,
                args.score_func,
                args.norm_gates,
                make_balancer(),
                routing,
            )
        else:
            self.ffn = DenseFFN(args.d_model, args.dense_hidden)

    @property
    def is_moe(self) -> bool:
        return isinstance(self.ffn, MoELayer)

    def forward(self, x_BSD: torch.Tensor):
        x_BSD = x_BSD + self.attn(self.attn_norm(x_BSD))
        ffn_out = self.ffn(self.ffn_norm(x_BSD))
        if self.is_moe:
            return x_BSD + ffn_out.y_BSD, ffn_out
        return x_BSD + ffn_out, None


class MoELM(nn.Module):
    def __init__(self, args: ModelArgs, make_balancer: Callable[[], nn.Module], routing: RoutingArgs = RoutingArgs()):
        super().__init__()
        routing.check(args.n_routed_experts, args.top_k)
        self.args, self.routing = args, routing
        self.embed = nn.Embedding(args.vocab_size, args.d_model)
        self.blocks = nn.ModuleList(
            Block(args, moe=i >= args.n_dense_layers, make_balancer=make_balancer, routing=routing)
            for i in range(args.n_layers)
        )
        self.norm = nn.RMSNorm(args.d_model)
        self.head = nn.Linear(args.d_model, args.vocab_size, bias=False)
        self.graph_steps = False  # compiling.compile_blocks sets it when its blocks replay CUDA graphs
        if args.tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=self.args.init_std)

    @property
    def moe_layers(self) -> list[MoELayer]:
        return [b.ffn for b in self.blocks if b.is_moe]

    def forward(self, tokens_BS: torch.Tensor, trace: bool = False) -> LMOutput:
        """trace=True also returns every token's chosen experts and gates (diagnostics/trace.py)."""
        if self.graph_steps:  # every forward is a new step: its graphs may reuse the last step's output memory
            torch.compiler.cudagraph_mark_step_begin()  # (what leaves here is stacked or summed: copies)
        x_BSD = self.embed(tokens_BS)
        aux_losses, counts, dropped, routes = [], [], [], []
        for block in self.blocks:
            x_BSD, moe_out = self._run_block(block, x_BSD)
            if moe_out is not None:
                counts.append(moe_out.counts_BE)
                dropped.append(moe_out.dropped)
                if trace:
                    routes.append((moe_out.experts_TK, moe_out.gates_TK.detach()))
                if moe_out.aux_loss is not None:
                    aux_losses.append(moe_out.aux_loss)
        logits_BSV = self.head(self.norm(x_BSD))
        aux_loss = torch.stack(aux_losses).sum() if aux_losses else logits_BSV.new_zeros(())
        out = LMOutput(logits_BSV, aux_loss, torch.stack(counts), torch.stack(dropped))
        if trace:
            out.experts_LTK = torch.stack([experts for experts, _ in routes])
            out.gates_LTK = torch.stack([gates for _, gates in routes])
        return out

    def _run_block(self, block: Block, x_BSD: torch.Tensor):
        if not (self.args.activation_checkpointing and self.training and torch.is_grad_enabled()):
            return block(x_BSD)
        # Backward re-runs the block's forward; its outputs (counts included) are discarded, and the
        # balancers skip their side effects while recomputing (see balancing/base.py), so each token
        # is counted once per step.
        return checkpoint(block, x_BSD, use_reentrant=False)
