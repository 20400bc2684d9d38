"""The router: token-to-expert affinities, top-K choice, gate weights, capacity.

The balancer decides *who is chosen* (it may bias the scores used for top-K); the gate weights
that scale the chosen experts' outputs always come from the unbiased affinities. RoutingArgs
adds the choices other frameworks make (selection.py: jitter, Sinkhorn, group-limited routing)
and expert capacity (capacity.py: which chosen slots are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from balance_lab.distributed import data_parallel_rank
from balance_lab.model.args import RoutingArgs
from balance_lab.model.capacity import expert_capacity, kept_slots, renormalised
from balance_lab.model.recompute import recomputing
from balance_lab.model.selection import group_limited, jitter, sinkhorn, uniform_choice

FORCED_EVAL_SEED = 0  # forced balance in evaluation: the same draws for every run


@dataclass
class Routing:
    """What one MoE layer decided for one forward pass. T = B*S tokens, E experts, K chosen.

    The counts are made once, when it is built, and shared: the dispatch, the balancing losses and
    the metrics all read them (plain fields, not cached properties: torch.compile traces them)."""

    logits_TE: torch.Tensor  # router logits (fp32)
    scores_TE: torch.Tensor  # affinities s_{i,t}: sigmoid or softmax of the logits (fp32)
    experts_TK: torch.Tensor  # chosen expert ids (int64)
    gates_TK: torch.Tensor  # weights of the chosen experts' outputs, from the unbiased scores
    batch_size: int  # B: tokens are laid out sequence after sequence, S = T // B each
    kept_TK: torch.Tensor | None = None  # bool, slots within their expert's capacity; None: nothing dropped
    router_weight_ED: torch.Tensor | None = None  # the router's weight (balancing terms on the weights read it)
    counts_BE: torch.Tensor = field(init=False)  # routed slots per sequence and expert, int64 (never a float type)
    counts_E: torch.Tensor = field(init=False)  # routed slots per expert, int64
    dispatch_experts_TK: torch.Tensor = field(init=False)  # chosen expert per slot, dropped slots given id E
    kept_counts_E: torch.Tensor = field(init=False)  # slots per expert that the experts compute (after dropping)
    dropped: torch.Tensor = field(init=False)  # () int64: slots dropped at capacity in this forward

    def __post_init__(self) -> None:
        B, E = self.batch_size, self.num_experts
        T, K = self.experts_TK.shape
        seq_T = torch.arange(T, device=self.experts_TK.device) // (T // B)
        slot_ids = (seq_T[:, None] * E + self.experts_TK).reshape(-1)  # (T*K,)
        self.counts_BE = count_ids(slot_ids, B * E).view(B, E)
        self.counts_E = self.counts_BE.sum(dim=0)
        if self.kept_TK is None:
            self.dispatch_experts_TK, self.kept_counts_E = self.experts_TK, self.counts_E
            self.dropped = self.counts_E.new_zeros(())
        else:  # sorted by id, dropped slots (id E) fall behind every expert
            self.dispatch_experts_TK = self.experts_TK.masked_fill(~self.kept_TK, E)
            self.kept_counts_E = count_ids(self.dispatch_experts_TK.reshape(-1), E + 1)[:E]
            self.dropped = (~self.kept_TK).sum()

    @property
    def num_experts(self) -> int:
        return self.scores_TE.shape[-1]

    @property
    def top_k(self) -> int:
        return self.experts_TK.shape[-1]


def count_ids(ids_N: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) int64 occurrences of each id in [0, n). Not torch.bincount: on a GPU it reads the
    largest id back to the host first, a host-device sync per call (several per layer and step)."""
    return torch.zeros(n, dtype=torch.int64, device=ids_N.device).index_add_(0, ids_N, torch.ones_like(ids_N))


class Router(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_experts: int,
        top_k: int,
        score_func: str,
        norm_gates: bool,
        balancer: nn.Module,
        options: RoutingArgs = RoutingArgs(),
    ):
        super().__init__()
        self.proj = nn.Linear(d_model, n_experts, bias=False)
        self.top_k = top_k
        self.score_func = score_func
        self.norm_gates = norm_gates
        self.balancer = balancer  # consulted for selection; owns its state (e.g. loss-free biases)
        self.options = options
        if options.force_balance:  # the training draws' generator state, saved in checkpoints (resumes exactly)
            seed = int(torch.randint(0, 2**62, (1,)))  # from the run's seed, different per layer
            self.register_buffer("forced_rng_state", torch.Generator().manual_seed(seed).get_state())
        self._last_forced: torch.Tensor | None = None

    def forward(self, x_TD: torch.Tensor, batch_size: int) -> Routing:
        opts = self.options
        if opts.jitter > 0 and self.training:
            x_TD = jitter(x_TD, opts.jitter)
        # Routing runs in fp32 or wider whatever the autocast dtype: bf16 affinities tie and flip top-K choices.
        dtype = torch.promote_types(x_TD.dtype, torch.float32)
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            logits_TE = F.linear(x_TD.to(dtype), self.proj.weight.to(dtype))
        if self.score_func == "sigmoid":
            scores_TE = torch.sigmoid(logits_TE)
        else:
            scores_TE = torch.softmax(logits_TE, dim=-1)
        experts_TK = self._choose(logits_TE.detach(), scores_TE.detach())
        gates_TK = scores_TE.gather(-1, experts_TK)
        if self.norm_gates:
            gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
        kept_TK = None
        if opts.capacity_factor is not None:
            T, E = scores_TE.shape
            capacity = expert_capacity(T, self.top_k, E, opts.capacity_factor)
            kept_TK = kept_slots(experts_TK, gates_TK, E, capacity, opts.drop_policy)
            if opts.renorm_kept:
                gates_TK = renormalised(gates_TK, kept_TK)
        return Routing(logits_TE, scores_TE, experts_TK, gates_TK, batch_size, kept_TK, self.proj.weight)

    def _forced(self, scores_TE: torch.Tensor) -> torch.Tensor:
        """Uniform random experts: training draws continue one generator (its state a buffer), each
        evaluation forward draws from the same fixed seed, so validation is the same in every run."""
        if self.training and recomputing() and self._last_forced is not None:
            return self._last_forced  # activation checkpointing re-runs this forward: the same draws again
        generator = torch.Generator()
        if self.training:
            generator.set_state(self.forced_rng_state.cpu())
        else:
            generator.manual_seed(FORCED_EVAL_SEED)
        T, E = scores_TE.shape
        rank = data_parallel_rank() if self.training else 0
        if rank:  # another data-parallel rank draws its own experts, from a seed set by the shared state and its rank
            seed = int(torch.randint(0, 2**62, (1,), generator=generator.clone_state())) + rank
            experts_TK = uniform_choice(T, E, self.top_k, torch.Generator().manual_seed(seed))
            uniform_choice(T, E, self.top_k, generator)  # and advances the shared state as rank 0 does (checkpoints)
        else:
            experts_TK = uniform_choice(T, E, self.top_k, generator)
        experts_TK = experts_TK.to(scores_TE.device)
        if self.training:
            self.forced_rng_state.copy_(generator.get_state())
            self._last_forced = experts_TK
        return experts_TK

    def _choose(self, logits_TE: torch.Tensor, scores_TE: torch.Tensor) -> torch.Tensor:
        """(T, K) chosen experts: top-K of the selection scores (biased, Sinkhorn-balanced, group-limited)."""
        opts = self.options
        if opts.force_balance:
            return self._forced(scores_TE)
        if opts.sinkhorn_iters > 0 and self.training:  # evaluation: plain top-K of the scores
            selection_TE = sinkhorn(logits_TE, opts.sinkhorn_iters)
        else:
            selection_TE = self.balancer.selection_scores(scores_TE, logits_TE)
        if opts.grouped:
            selection_TE = group_limited(selection_TE, opts.n_groups, opts.group_topk)
        return selection_TE.topk(self.top_k, dim=-1).indices
