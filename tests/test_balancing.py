"""Balancing terms on small hand-computed routings (expected numbers written out)."""

import pytest
import torch

from balance_lab.balancing import AuxLoss, Balancer, LossFreeBias, RouterZLoss, build_balancer
from balance_lab.model.router import Routing

# 4 tokens, 2 experts, top-1. Scores already sum to 1 per token, so normalisation changes nothing.
SCORES = [[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]]
EXPERTS = [[0], [0], [1], [0]]  # counts [3, 1]


def routing(batch_size=1, scores=SCORES, experts=EXPERTS):
    scores_TE = torch.tensor(scores, requires_grad=True)
    experts_TK = torch.tensor(experts)
    return Routing(torch.log(scores_TE.detach()), scores_TE, experts_TK, scores_TE.gather(1, experts_TK), batch_size)


def test_micro_batch_aux_loss_value():
    # f = count * E / (K * T) = [3, 1] * 2 / 4 = [1.5, 0.5]; P = column means = [0.65, 0.35]
    # sum f * P = 0.975 + 0.175 = 1.15; alpha = 0.1
    assert AuxLoss(alpha=0.1, scope="micro").loss(routing()).item() == pytest.approx(0.115)


def test_sequence_aux_loss_value():
    # two sequences of two tokens. seq 0: experts [0, 0] -> f = [2, 0], P = [0.7, 0.3] -> 1.4
    #                               seq 1: experts [1, 0] -> f = [1, 1], P = [0.6, 0.4] -> 1.0
    # mean over sequences 1.2, alpha 0.1
    assert AuxLoss(alpha=0.1, scope="sequence").loss(routing(batch_size=2)).item() == pytest.approx(0.12)


def test_uniform_router_gives_alpha():
    r = routing(scores=[[0.5, 0.5]] * 4, experts=[[0], [1], [0], [1]])
    assert AuxLoss(alpha=0.01).loss(r).item() == pytest.approx(0.01)


def test_aux_loss_gradient_flows_through_P_only():
    # With the counts a constant, d/ds_tk [alpha/T * sum_i f_i s_ti / sum_j s_tj] at sum_j s_tj = 1
    # is alpha/T * (f_k - sum_i f_i s_ti). Token 0: f = [1.5, 0.5], s = [0.8, 0.2]: sum f s = 1.3
    # -> 0.1/4 * [0.2, -0.8] = [0.005, -0.02].
    r = routing()
    AuxLoss(alpha=0.1).loss(r).backward()
    assert r.scores_TE.grad[0].tolist() == pytest.approx([0.005, -0.02])
    assert not r.experts_TK.is_floating_point()  # counts come from integer ids: no gradient path


def test_router_z_loss_value():
    # logits [0, 0]: logsumexp = ln 2, squared 0.480453; weight 1e-3
    r = Routing(torch.zeros(3, 2), torch.full((3, 2), 0.5), torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 1)
    assert RouterZLoss(1e-3).loss(r).item() == pytest.approx(1e-3 * 0.4804530139)


def test_loss_free_sign_rule_raises_underloaded_bias():
    term = LossFreeBias(n_experts=3, update_rate=1e-3)
    Balancer([term]).step_end(torch.tensor([30, 10, 20]))  # mean 20: errors [-10, 10, 0]
    assert term.bias_E.tolist() == pytest.approx([-1e-3, 1e-3, 0.0])


def test_loss_free_raw_rule_is_relative_error():
    term = LossFreeBias(n_experts=2, update_rate=1e-2, rule="raw")
    term.step_end(torch.tensor([3, 1]))  # mean 2: errors [-1, 1], relative [-0.5, 0.5]
    assert term.bias_E.tolist() == pytest.approx([-5e-3, 5e-3])


def test_loss_free_multiplicative_starts_at_one_and_scales_scores():
    term = LossFreeBias(n_experts=2, update_rate=0.5, bias="multiplicative")
    assert term.bias_E.tolist() == [1.0, 1.0]
    term.step_end(torch.tensor([3, 1]))
    assert term.bias_E.tolist() == [0.5, 1.5]
    assert term.selection_scores(torch.tensor([[0.6, 0.4]]))[0].tolist() == pytest.approx([0.3, 0.6])


def test_bias_range_is_how_far_apart_the_biases_are_and_none_without_a_bias():
    balancer = build_balancer({"name": "v3", "update_rate": 1e-2, "alpha": 1e-4, "scope": "sequence"}, 3)
    assert balancer.bias_range().item() == 0.0
    balancer.step_end(torch.tensor([30, 10, 20]))  # biases [-u, u, 0]
    balancer.step_end(torch.tensor([30, 10, 20]))  # [-2u, 2u, 0]
    assert balancer.bias_range().item() == pytest.approx(4e-2)
    assert build_balancer({"name": "aux", "update_rate": 0.0, "alpha": 1e-3}, 3).bias_range() is None


def test_step_end_refuses_float_counts():
    with pytest.raises(TypeError, match="integers"):
        Balancer([LossFreeBias(2, 1e-3)]).step_end(torch.tensor([3.0, 1.0], dtype=torch.bfloat16))


def test_build_balancer_combines_terms_from_knobs():
    balancer = build_balancer(
        {"name": "v3", "update_rate": 1e-3, "alpha": 1e-4, "scope": "sequence", "z_loss": 1e-3}, 8
    )
    assert [type(t).__name__ for t in balancer.terms] == ["LossFreeBias", "AuxLoss", "RouterZLoss"]
    assert build_balancer({"name": "none", "update_rate": 0.0, "alpha": 0.0}, 8).terms.__len__() == 0


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"rule": "signum"}, "balance.rule='signum': choose one of sign, raw"),
        ({"bias": "add"}, "balance.bias='add': choose one of additive, multiplicative"),
        ({"scope": "batch"}, "balance.scope='batch': choose one of micro, sequence, global"),
        ({"alpha": -1.0}, "balance.alpha=-1.0: must be >= 0"),
        ({"update_rate": -1e-3}, "balance.update_rate=-0.001: must be >= 0"),
        ({"lr": 1.0}, "unknown balance key(s) lr"),
    ],
)
def test_bad_balance_config_names_the_knob(cfg, message):
    with pytest.raises(ValueError) as info:
        build_balancer(cfg, 8)
    assert message in str(info.value)


def test_biases_are_saved_and_restored_with_the_model():
    from balance_lab.model import ModelArgs, MoELM

    args = ModelArgs(seq_len=16, d_model=32, n_layers=2, n_heads=2, n_routed_experts=4, top_k=2, expert_hidden=8)
    make = lambda: build_balancer({"update_rate": 1e-3}, 4)  # noqa: E731
    model = MoELM(args, make)
    model.moe_layers[0].balancer.step_end(torch.tensor([5, 1, 1, 1]))
    restored = MoELM(args, make)
    restored.load_state_dict(model.state_dict())
    assert restored.moe_layers[0].balancer.terms[0].bias_E.tolist() == pytest.approx([-1e-3, 1e-3, 1e-3, 1e-3])


def test_global_aux_loss_accumulates_counts_over_the_step_and_resets():
    term = AuxLoss(alpha=0.1, scope="global", n_experts=2)
    # micro-batch 1 alone: counts [3, 1] over 4 tokens, same as the micro-batch loss: 0.115
    assert term.loss(routing()).item() == pytest.approx(0.115)
    # micro-batch 2 routes [1, 1, 1, 0]: buffer [4, 4] over 8 tokens -> f = [1, 1]; P = [0.65, 0.35] -> 0.1
    assert term.loss(routing(experts=[[1], [1], [1], [0]])).item() == pytest.approx(0.1)
    assert term.step_counts_E1.tolist() == [4, 4, 8]
    term.step_end(torch.tensor([4, 4]))
    assert term.step_counts_E1.tolist() == [0, 0, 0]
