"""The balancing methods of 2025-26 against hand computations: the router orthogonality loss and
its gradient, the loss-free momentum, cap, warm-up and schedules, update_rate=auto, forced balance."""

import math

import pytest
import torch

from balance_lab.balancing import Balancer
from balance_lab.balancing.loss_free import LossFreeBias
from balance_lab.balancing.orthogonality import orthogonality
from balance_lab.model.args import RoutingArgs
from balance_lab.model.router import Router


def test_orthogonality_loss_and_its_gradient_by_hand():
    # rows r1 = (1, 0), r2 = (1, 1): unit rows u1 = (1, 0), u2 = (1, 1)/sqrt(2), cos = 1/sqrt(2)
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = orthogonality(weight)
    assert loss.item() == pytest.approx(2 / math.sqrt(2))  # the two off-diagonal entries
    loss.backward()
    # d(2 u1.u2)/dr1 = 2 (u2 - cos u1) / |r1| = (0, sqrt 2); d/dr2 = 2 (u1 - cos u2) / |r2| = (1, -1) / sqrt 2
    expected = torch.tensor([[0.0, math.sqrt(2)], [1 / math.sqrt(2), -1 / math.sqrt(2)]])
    torch.testing.assert_close(weight.grad, expected)
    assert orthogonality(torch.eye(4) * 3).item() == 0.0  # orthogonal rows, any length


def test_warmup_and_schedules_scale_u_at_chosen_steps():
    def rate(step, **kw):
        return LossFreeBias(4, 0.01, horizon=10, **kw).rate_at(step)

    assert rate(2, warmup_steps=2) == 0.0 and rate(3, warmup_steps=2) == 0.01
    assert rate(3, schedule="cosine") == pytest.approx(0.01 * (1 + math.cos(math.pi * 0.3)) / 2)
    assert rate(5, schedule="linear") == pytest.approx(0.005) and rate(10, schedule="linear") == 0.0
    assert rate(5, schedule="off_after", schedule_end=0.5) == 0.01
    assert rate(6, schedule="off_after", schedule_end=0.5) == 0.0
    with pytest.raises(ValueError, match="needs the run's length"):
        LossFreeBias(4, 0.01, schedule="cosine")


def test_momentum_takes_the_error_on_the_ema_of_the_loads_and_the_cap_clamps():
    term = LossFreeBias(3, 0.1, momentum=0.9, bias_cap=0.15)
    term.step_end(torch.tensor([30, 0, 0]))  # EMA starts at the first loads: (30, 0, 0), mean 10
    torch.testing.assert_close(term.bias_E, torch.tensor([-0.1, 0.1, 0.1]))
    term.step_end(torch.tensor([0, 0, 30]))  # EMA: (27, 0, 3), mean 10: signs (-, +, +)
    torch.testing.assert_close(term.load_E, torch.tensor([27.0, 0.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(term.bias_E, torch.tensor([-0.15, 0.15, 0.15]))  # +-0.2 clamped to the cap
    plain = LossFreeBias(3, 0.1)
    plain.step_end(torch.tensor([30, 0, 0]))
    plain.step_end(torch.tensor([0, 0, 30]))  # without momentum the second step's error flips expert 2
    torch.testing.assert_close(plain.bias_E, torch.tensor([0.0, 0.2, 0.0]))
    assert "step" not in dict(plain.named_buffers())  # a plain loss-free bias keeps its old checkpoint layout


def test_update_rate_auto_follows_the_horizon_and_keeps_the_config_hash():
    from omegaconf import OmegaConf

    from balance_lab.config.compose import compose_config
    from balance_lab.config.validation import auto_note, check_config
    from balance_lab.store.tracking import config_hash

    for steps, u in ((300, 1e-2), (2000, 1.5e-3)):
        cfg = compose_config(["balance.update_rate=auto", f"trainer.max_steps={steps}"])
        assert check_config(cfg).balance["update_rate"] == u
        assert auto_note(cfg).startswith(f"balance.update_rate=auto: u = {u:g} for trainer.max_steps={steps}")
        explicit = compose_config([f"balance.update_rate={u}", f"trainer.max_steps={steps}"])
        assert config_hash(OmegaConf.to_container(cfg, resolve=True)) == config_hash(
            OmegaConf.to_container(explicit, resolve=True)
        )


def forced_router(seed: int) -> Router:
    torch.manual_seed(seed)
    return Router(8, 16, 4, "sigmoid", True, torch.nn.Identity(), RoutingArgs(force_balance=True))


def test_forced_balance_is_uniform_within_sampling_noise_whatever_the_scores():
    router = forced_router(0).train()
    x_TD = torch.randn(4000, 8) + 5.0  # inputs that would send every token to the same experts
    routing = router(x_TD, batch_size=4)
    counts_E = routing.counts_E.double()
    mean = 4000 * 4 / 16
    sd = math.sqrt(4000 * (4 / 16) * (1 - 4 / 16))  # each expert is one of a token's 4 of 16 with p = 1/4
    assert (counts_E - mean).abs().max() < 5 * sd
    torch.manual_seed(0)  # the same router unforced: these inputs skew it far beyond the noise
    plain = Router(8, 16, 4, "sigmoid", True, Balancer([]), RoutingArgs()).train()
    assert (plain(x_TD, batch_size=4).counts_E.double() - mean).abs().max() > 5 * sd
    assert torch.equal(
        routing.gates_TK,
        routing.scores_TE.gather(1, routing.experts_TK)
        / routing.scores_TE.gather(1, routing.experts_TK).sum(-1, keepdim=True),
    )  # gates as usual


def test_forced_balance_draws_resume_exactly_from_a_checkpointed_state_and_eval_is_fixed():
    x_TD = torch.randn(64, 8)
    first = forced_router(1).train()
    first(x_TD, batch_size=1)
    saved = {k: v.clone() for k, v in first.state_dict().items()}
    continued = first(x_TD, batch_size=1).experts_TK
    resumed = forced_router(2).train()  # another seed: only the checkpoint's state makes it the same
    resumed.load_state_dict(saved)
    assert torch.equal(resumed(x_TD, batch_size=1).experts_TK, continued)
    assert not torch.equal(forced_router(2).train()(x_TD, batch_size=1).experts_TK, continued)
    evals = [forced_router(s).eval()(x_TD, batch_size=1).experts_TK for s in (1, 2)]
    assert torch.equal(*evals)  # validation draws the same in every run
