"""Quantile Balancing (balancing/quantile.py) against a by-hand computation of Megatron-Core's
definition: the candidate, the average over micro-batches and data-parallel ranks, the EMA, the
re-centring; no update in evaluation or without gradients; the data-parallel average with real gloo."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from balance_lab.balancing.quantile import QuantileBalancing, qb_candidate
from balance_lab.model.args import RoutingArgs
from balance_lab.model.router import Router


def candidate_by_hand(S, beta, k):
    """Token by token, expert by expert, as the definition reads."""
    m, n = S.shape
    cutoffs = [sorted((S[i] - beta).tolist(), reverse=True)[k] for i in range(m)]  # the (k+1)-th value
    target = m * k // n
    return torch.tensor(
        [sorted([S[i, j].item() - cutoffs[i] for i in range(m)], reverse=True)[target] for j in range(n)]
    )


@pytest.mark.parametrize("m, n, k", [(37, 8, 2), (64, 16, 4), (5, 4, 3)])
def test_the_candidate_is_the_target_th_quantile_of_score_minus_cutoff(m, n, k):
    generator = torch.Generator().manual_seed(m * n + k)
    S, beta = torch.randn(m, n, generator=generator), 0.3 * torch.randn(n, generator=generator)
    torch.testing.assert_close(qb_candidate(S, beta, k), candidate_by_hand(S, beta, k))


def test_a_step_averages_the_micro_batches_then_ema_then_recentres():
    term = QuantileBalancing(6, 2, ema=0.25, space="logits").train()
    generator = torch.Generator().manual_seed(3)
    batches = [torch.randn(20, 6, generator=generator) for _ in range(3)]
    start = torch.tensor([0.2, -0.1, 0.4, -0.5, 0.0, 0.0])
    term.beta_E.copy_(start)
    for S in batches:  # selection and candidates all use the step's old beta
        chosen = term.selection_scores(torch.sigmoid(S), S)
        torch.testing.assert_close(chosen, S - start)
    average = sum(candidate_by_hand(S, start, 2) for S in batches) / 3
    term.step_end(torch.zeros(6, dtype=torch.int64))
    expected = 0.25 * start + 0.75 * average
    torch.testing.assert_close(term.beta_E, expected - expected.mean())
    assert int(term.candidates) == 0 and term.candidate_sum_E.abs().sum() == 0  # reset for the next step


def test_no_update_in_evaluation_or_without_gradients():
    term = QuantileBalancing(4, 1)
    S = torch.randn(10, 4)
    term.eval().selection_scores(S, S)
    with torch.no_grad():
        term.train().selection_scores(S, S)
    assert int(term.candidates) == 0
    term.step_end(torch.zeros(4, dtype=torch.int64))
    assert term.beta_E.abs().sum() == 0


def test_a_router_with_quantile_balancing_chooses_on_logits_minus_beta_and_gates_from_the_scores():
    from balance_lab.balancing.base import Balancer

    torch.manual_seed(0)
    qb = QuantileBalancing(8, 2)
    qb.beta_E.copy_(torch.linspace(-1, 1, 8))
    router = Router(4, 8, 2, "sigmoid", False, Balancer([qb]), RoutingArgs()).train()
    routing = router(torch.randn(12, 4), batch_size=1)
    expected = (routing.logits_TE - qb.beta_E).topk(2, dim=-1).indices
    assert torch.equal(routing.experts_TK, expected)
    torch.testing.assert_close(routing.gates_TK, routing.scores_TE.gather(1, routing.experts_TK))


def _rank(rank: int, port: int, sums, counts, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        term = QuantileBalancing(3, 1)
        term.candidate_sum_E.copy_(sums[rank])
        term.candidates.fill_(counts[rank])
        term._pending = True  # as the step's forwards would have left it
        term.step_end(torch.zeros(3, dtype=torch.int64))
        out[rank].copy_(term.beta_E)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_data_parallel_ranks_average_their_own_averages_as_megatron_does():
    """Rank 0 saw 1 micro-batch, rank 1 saw 3: the new beta is the mean of the two ranks' averages
    (Megatron's all-reduce AVG of local averages), not the mean over the 4 micro-batches."""
    from tests.helpers.network import free_port

    sums = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 0.0, 9.0])]
    counts = [1, 3]
    out = [torch.zeros(3).share_memory_(), torch.zeros(3).share_memory_()]
    mp.start_processes(_rank, args=(free_port(), sums, counts, out), nprocs=2, start_method="fork")
    rank_means = (sums[0] / 1 + sums[1] / 3) / 2  # (1, 1, 2.5)
    expected = rank_means - rank_means.mean()
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], expected)
    pooled = (sums[0] + sums[1]) / 4
    assert not torch.allclose(expected, pooled - pooled.mean())  # the single-process pooling would differ
