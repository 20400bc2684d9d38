"""The mechanisms other frameworks ship, each against its published formula with hand-computable
numbers: expert capacity and token dropping (GShard/Switch, Megatron-Core's drop policies),
Sinkhorn selection (Megatron-Core), group-limited routing (DeepSeek-V3), router input jitter
(Switch, Megatron-Core) and torchtitan's centred loss-free update."""

import math

import pytest
import torch
from torch import nn

from balance_lab.balancing import Balancer, LossFreeBias
from balance_lab.balancing.knobs import check_balance
from balance_lab.model.args import RoutingArgs
from balance_lab.model.capacity import expert_capacity, kept_slots, renormalised
from balance_lab.model.moe import MoELayer
from balance_lab.model.router import Router
from balance_lab.model.selection import group_limited, jitter, sinkhorn


def fixed_router(logits_TE, top_k, options=RoutingArgs(), bias=None, norm_gates=False):
    """A router whose projection returns the given logits for inputs = identity rows."""
    T, E = logits_TE.shape
    term = LossFreeBias(E, update_rate=1e-3)
    if bias is not None:
        term.bias_E.copy_(torch.tensor(bias))
    router = Router(
        d_model=T,
        n_experts=E,
        top_k=top_k,
        score_func="sigmoid",
        norm_gates=norm_gates,
        balancer=Balancer([term]),
        options=options,
    )
    with torch.no_grad():
        router.proj.weight.copy_(logits_TE.T)
    return router, torch.eye(T)


# ---- capacity ------------------------------------------------------------------------------
def test_capacity_is_ceil_of_factor_times_tokens_times_k_over_experts():
    assert expert_capacity(tokens=6, top_k=2, n_experts=4, capacity_factor=1.25) == 4  # ceil(3.75)
    assert expert_capacity(tokens=8, top_k=2, n_experts=4, capacity_factor=1.0) == 4  # exactly the balanced load
    assert expert_capacity(tokens=10, top_k=1, n_experts=16, capacity_factor=2.0) == 2  # ceil(1.25)
    # Megatron-Core's get_capacity order, ceil((T * K / E) * f), to the bit: 360 * 1.1 = 396.00000000000006
    assert expert_capacity(tokens=960, top_k=6, n_experts=16, capacity_factor=1.1) == 397
    assert math.ceil(1.1 * 960 * 6 / 16) == 396  # the other order rounds down here


def test_probs_policy_keeps_the_highest_gates_and_position_the_earliest_tokens():
    experts_TK = torch.tensor([[0], [0], [0], [0], [1]])  # four tokens want expert 0, capacity 2
    gates_TK = torch.tensor([[0.1], [0.4], [0.3], [0.4], [0.9]])
    probs = kept_slots(experts_TK, gates_TK, n_experts=2, capacity=2, policy="probs")
    assert probs.flatten().tolist() == [False, True, False, True, True]  # 0.4 and 0.4 (the tie: both fit)
    position = kept_slots(experts_TK, gates_TK, n_experts=2, capacity=2, policy="position")
    assert position.flatten().tolist() == [True, True, False, False, True]
    tie = kept_slots(experts_TK, gates_TK, n_experts=2, capacity=1, policy="probs")
    assert tie.flatten().tolist() == [False, True, False, False, True]  # equal gates: the earlier token


def test_capacity_counts_slots_of_top_k_tokens_per_expert():
    # K = 2: token t's slots are (t, 0) and (t, 1); expert 2 is chosen by all three tokens
    experts_TK = torch.tensor([[2, 0], [1, 2], [2, 3]])
    gates_TK = torch.tensor([[0.5, 0.5], [0.7, 0.3], [0.6, 0.4]])
    keep = kept_slots(experts_TK, gates_TK, n_experts=4, capacity=2, policy="probs")
    assert keep.tolist() == [[True, True], [True, False], [True, True]]  # expert 2 keeps 0.6 and 0.5, drops 0.3
    keep = kept_slots(experts_TK, gates_TK, n_experts=4, capacity=2, policy="position")
    assert keep.tolist() == [[True, True], [True, True], [False, True]]  # expert 2 keeps tokens 0 and 1


def test_renormalised_kept_gates_sum_to_what_all_k_summed():
    gates_TK = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    keep_TK = torch.tensor([[True, False], [False, False]])
    assert renormalised(gates_TK, keep_TK).tolist() == [[1.0, 0.0], [0.0, 0.0]]  # a token without slots keeps zeros


def moe_layer(E=6, K=2, D=8, H=4, options=RoutingArgs()):
    torch.manual_seed(0)
    layer = MoELayer(D, E, 1, K, H, "sigmoid", True, Balancer([]), options)
    for p in layer.parameters():
        nn.init.normal_(p, std=0.3)
    return layer


def test_a_dropped_slot_contributes_nothing_and_its_token_keeps_the_shared_expert():
    """The layer with capacity equals the layer without, with each dropped slot's gate set to 0:
    same output, same gradients. A token whose every slot is dropped gets the shared expert only."""
    x_BSD = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    capped = moe_layer(options=RoutingArgs(capacity_factor=0.5))
    plain = moe_layer()
    routing = capped.router(x_BSD.reshape(10, 8), batch_size=2)
    assert 0 < int(routing.dropped) < 20  # capacity ceil(0.5 * 10 * 2 / 6) = 2 per expert

    def zero_dropped_gates(module, inputs, routing_out):
        routing_out.gates_TK = routing_out.gates_TK * routing.kept_TK
        return routing_out

    plain.router.register_forward_hook(zero_dropped_gates)
    y_capped, y_plain = capped(x_BSD), plain(x_BSD)
    torch.testing.assert_close(y_capped.y_BSD, y_plain.y_BSD)
    assert int(y_capped.dropped) == int(routing.dropped) and int(y_plain.dropped) == 0
    y_capped.y_BSD.square().sum().backward()
    y_plain.y_BSD.square().sum().backward()
    for (name, a), b in zip(capped.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    # counts stay the router's choice (before dropping): what MaxVio and the balancers see
    assert int(routing.counts_E.sum()) == 20 and int(routing.kept_counts_E.sum()) == 20 - int(routing.dropped)
    fully_dropped = (~routing.kept_TK).all(dim=-1)
    assert fully_dropped.any()  # this input has one (token 2): every one of its slots over capacity
    t = int(fully_dropped.nonzero()[0])
    torch.testing.assert_close(y_capped.y_BSD.reshape(10, 8)[t], capped.shared(x_BSD.reshape(10, 8)[t]))


def test_evaluation_drops_at_the_same_capacity():
    layer = moe_layer(options=RoutingArgs(capacity_factor=0.5))
    x_BSD = torch.randn(2, 5, 8)
    with torch.no_grad():
        trained, evaluated = layer.train()(x_BSD), layer.eval()(x_BSD)
    assert int(evaluated.dropped) == int(trained.dropped) > 0


# ---- Sinkhorn ------------------------------------------------------------------------------
def megatron_sinkhorn(cost: torch.Tensor, tol: float = 0.0001) -> torch.Tensor:
    """Megatron-Core's moe_utils.sinkhorn, as published."""
    cost = torch.exp(cost)
    d0 = torch.ones(cost.size(0), dtype=cost.dtype)
    d1 = torch.ones(cost.size(1), dtype=cost.dtype)
    eps = 0.00000001
    error = 1e9
    d1_old = d1
    while error > tol:
        d0 = (1 / d0.size(0)) * 1 / (torch.sum(d1 * cost, 1) + eps)
        d1 = (1 / d1.size(0)) * 1 / (torch.sum(d0.unsqueeze(1) * cost, 0) + eps)
        error = torch.mean(torch.abs(d1_old - d1))
        d1_old = d1
    return d1 * cost * d0.unsqueeze(1)


def test_sinkhorn_matches_megatron_and_is_doubly_normalised():
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    ours = sinkhorn(logits, max_iters=1000)
    torch.testing.assert_close(ours, megatron_sinkhorn(logits.clone()), rtol=1e-5, atol=1e-9)
    # stopped on d1 settling: rows and columns normalised to within the tolerance's reach
    torch.testing.assert_close(ours.sum(dim=1), torch.full((64,), 1 / 64, dtype=torch.float64), rtol=1e-3, atol=0)
    torch.testing.assert_close(ours.sum(dim=0), torch.full((8,), 1 / 8, dtype=torch.float64), rtol=1e-3, atol=0)


def test_sinkhorn_selection_spreads_a_collapsed_router_in_training_only():
    # 12 tokens all prefer expert 0 (logit 3); their second choice (logit 2) is expert 1, 2 or 3 in turn.
    # Plain top-1 sends every token to expert 0; on the Sinkhorn-balanced matrix expert 0's column is
    # scaled down until most tokens take their second choice.
    logits = torch.zeros(12, 4)
    logits[:, 0] = 3.0
    logits[torch.arange(12), 1 + torch.arange(12) % 3] = 2.0
    router, x = fixed_router(logits, top_k=1, options=RoutingArgs(sinkhorn_iters=100))
    trained = router.train()(x, batch_size=1)
    reference = megatron_sinkhorn(logits.clone()).argmax(dim=1)
    assert trained.experts_TK.flatten().tolist() == reference.tolist()
    assert trained.counts_E.tolist() == [0, 4, 4, 4]  # d1 of expert 0 falls below e^-1 of the others'
    assert trained.gates_TK.flatten().tolist() == pytest.approx(
        torch.sigmoid(logits.gather(1, trained.experts_TK)).flatten().tolist()
    )  # gates: unnormalised scores
    evaluated = router.eval()(x, batch_size=1)
    assert evaluated.counts_E.tolist() == [12, 0, 0, 0]  # evaluation: plain top-K


# ---- group-limited routing -----------------------------------------------------------------
def deepseek_v3_reference(scores_TE, bias_E, n_group, topk_group, top_k):
    """DeepSeek-V3's formula, token by token: group score = sum of the top-2 biased scores in the
    group; keep the topk_group best groups; top-K of the biased scores inside them."""
    chosen = []
    for s in scores_TE + bias_E:
        groups = s.view(n_group, -1)
        group_score = [sorted(g.tolist(), reverse=True)[:2] for g in groups]
        best = sorted(range(n_group), key=lambda i: -sum(group_score[i]))[:topk_group]
        size = s.numel() // n_group
        candidates = [e for g in best for e in range(g * size, (g + 1) * size)]
        chosen.append(sorted(sorted(candidates, key=lambda e: -float(s[e]))[:top_k]))
    return chosen


def test_group_limited_routing_by_hand():
    # 4 groups of 2; group scores (top-2 sums) 1.0, 1.05, 0.95, 0.6 -> groups 1 and 0 -> experts 0 and 2.
    # Plain top-2 would take expert 4 (0.95, the highest score), whose group is not kept.
    scores = torch.tensor([[0.9, 0.1, 0.6, 0.45, 0.95, 0.0, 0.3, 0.3]])
    masked = group_limited(scores, n_groups=4, group_topk=2)
    assert sorted(masked.topk(2).indices[0].tolist()) == [0, 2]
    assert masked[0, 4:].tolist() == [float("-inf")] * 4


def test_group_scores_include_the_loss_free_bias_as_deepseek_v3():
    logits = torch.logit(torch.tensor([[0.9, 0.1, 0.6, 0.45, 0.95, 0.0001, 0.3, 0.3]]))
    bias = [0.0] * 6 + [0.5, 0.5]  # lifts group 3's score to 1.6: groups 3 and 1 -> experts 6 and 7
    router, x = fixed_router(logits, top_k=2, options=RoutingArgs(n_groups=4, group_topk=2), bias=bias, norm_gates=True)
    routing = router(x, batch_size=1)
    assert sorted(routing.experts_TK[0].tolist()) == [6, 7]
    assert routing.gates_TK[0].tolist() == pytest.approx([0.5, 0.5])  # gates from the unbiased scores 0.3, 0.3


def test_group_limited_routing_equals_the_deepseek_v3_reference():
    g = torch.Generator().manual_seed(0)
    scores, bias = torch.rand(200, 16, generator=g), torch.randn(16, generator=g) * 0.1
    for n_groups, group_topk, top_k in [(4, 2, 4), (8, 3, 2), (2, 1, 4)]:
        masked = group_limited(scores + bias, n_groups, group_topk)
        ours = masked.topk(top_k).indices.sort(dim=-1).values.tolist()
        assert ours == deepseek_v3_reference(scores, bias, n_groups, group_topk, top_k), (n_groups, group_topk)


# ---- jitter --------------------------------------------------------------------------------
def test_jitter_is_multiplicative_uniform_noise_on_the_router_input_in_training_only():
    x = torch.full((1000, 4), 2.0)
    noisy = jitter(x, 0.1)
    assert noisy.min() >= 1.8 and noisy.max() <= 2.2 and noisy.std() > 0.05  # x * U(0.9, 1.1)
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    router, x = fixed_router(logits, top_k=1, options=RoutingArgs(jitter=0.5))
    torch.manual_seed(0)
    trained = router.train()(x, batch_size=1)
    assert not torch.equal(trained.logits_TE, logits)
    assert torch.equal(router.eval()(x, batch_size=1).logits_TE, logits @ torch.eye(4))  # evaluation: exact input


def test_the_experts_read_the_input_without_jitter():
    x_BSD = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(2))
    jittered, plain = moe_layer(options=RoutingArgs(jitter=0.3)), moe_layer()
    routing = {}
    jittered.router.register_forward_hook(lambda m, i, out: routing.setdefault("r", out))
    plain.router.register_forward_hook(lambda m, i, out: routing["r"])  # same choices and gates as the jittered
    torch.manual_seed(0)
    torch.testing.assert_close(jittered(x_BSD).y_BSD, plain(x_BSD).y_BSD)
    unjittered_TE = jittered.router.proj(x_BSD.reshape(6, 8))
    assert not torch.equal(routing["r"].logits_TE, unjittered_TE)  # the router itself saw jittered input


# ---- torchtitan's centred update -----------------------------------------------------------
def test_centred_update_keeps_zero_mean_and_never_changes_the_additive_choice():
    plain, centred = LossFreeBias(4, 0.1), LossFreeBias(4, 0.1, center=True)
    for counts in ([10, 0, 0, 2], [5, 5, 1, 1], [0, 9, 3, 0]):
        plain.step_end(torch.tensor(counts))
        centred.step_end(torch.tensor(counts))
    assert float(centred.bias_E.mean()) == pytest.approx(0.0, abs=1e-7)
    assert float(plain.bias_E.mean()) != pytest.approx(0.0, abs=1e-3)  # the plain sign rule drifts
    shift = plain.bias_E - centred.bias_E
    torch.testing.assert_close(shift, shift.mean().expand(4))  # the two differ by one constant ...
    scores = torch.rand(100, 4, generator=torch.Generator().manual_seed(0))
    same = (
        plain.selection_scores(scores).topk(2).indices.sort().values
        == centred.selection_scores(scores).topk(2).indices.sort().values
    )
    assert same.all()  # ... which top-K of s + b cannot see


# ---- knobs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"capacity_factor": 0}, "balance.capacity_factor=0: must be > 0, or null for no dropping"),
        ({"capacity_factor": "big"}, "balance.capacity_factor='big'"),
        ({"drop_policy": "random"}, "balance.drop_policy='random': choose one of probs, position"),
        ({"renorm_kept": "yes"}, "balance.renorm_kept='yes': choose one of true, false"),
        ({"center": 1}, "balance.center=1: choose one of true, false"),
        ({"jitter": 1.5}, "balance.jitter=1.5: must be below 1"),
        ({"jitter": -0.1}, "balance.jitter=-0.1"),
        ({"sinkhorn_iters": 2.5}, "balance.sinkhorn_iters=2.5: must be an integer >= 0"),
        ({"n_groups": 0}, "balance.n_groups=0: must be >= 1 (1 = no groups)"),
        (
            {"sinkhorn_iters": 10, "update_rate": 1e-3},
            "Sinkhorn selection balances by itself; set balance.update_rate=0",
        ),
        ({"sinkhorn_iters": 10, "alpha": 1e-3}, "set balance.alpha=0"),
    ],
)
def test_bad_mechanism_knobs_name_the_knob_and_the_valid_values(cfg, message):
    with pytest.raises(ValueError) as error:
        check_balance(cfg)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "options, message",
    [
        (RoutingArgs(n_groups=3), "balance.n_groups=3: must divide model.n_routed_experts=16"),
        (RoutingArgs(n_groups=4, group_topk=5), "balance.group_topk=5: must be between 1 and balance.n_groups=4"),
        (RoutingArgs(n_groups=8, group_topk=1), "1 group(s) of 2 experts hold fewer than model.top_k=4"),
    ],
)
def test_group_knobs_that_the_model_shape_rules_out(options, message):
    with pytest.raises(ValueError) as error:
        options.check(n_experts=16, top_k=4)
    assert message in str(error.value)


def test_mechanisms_compose_in_one_router():
    """Loss-free bias + group-limited routing + capacity + jitter: one router, no class per combination."""
    torch.manual_seed(0)
    options = RoutingArgs(jitter=0.01, n_groups=4, group_topk=2, capacity_factor=1.0)
    layer = MoELayer(16, 16, 1, 4, 8, "sigmoid", True, Balancer([LossFreeBias(16, 1e-3)]), options).train()
    out = layer(torch.randn(4, 32, 16))
    x_TD = torch.randn(128, 16)
    routing = layer.router(x_TD, batch_size=4)
    assert not torch.equal(routing.logits_TE, layer.router.proj(x_TD))  # jitter on the router's input
    assert all(len(set((row // 4).tolist())) <= 2 for row in routing.experts_TK)  # at most 2 groups of 4 experts
    assert int(routing.kept_counts_E.max()) <= math.ceil(1.0 * 128 * 4 / 16)  # capacity 32 slots per expert
    assert int(out.dropped) > 0  # capacity 1.0: any expert above the mean load drops
    layer.balancer.step_end(routing.counts_E)  # the bias learns from the routed counts, before dropping
    assert float(layer.balancer.bias_range()) > 0
