"""Router, dispatch and the model's counts."""

import pytest
import torch
from torch import nn

from balance_lab.balancing import Balancer, LossFreeBias, build_balancer
from balance_lab.model import ModelArgs, MoELM
from balance_lab.model.moe import MoELayer
from balance_lab.model.router import Router


def make_router(n_experts=4, top_k=1, score_func="sigmoid", norm_gates=False, bias=None):
    term = LossFreeBias(n_experts, update_rate=1e-3)
    if bias is not None:
        term.bias_E.copy_(torch.tensor(bias))
    router = Router(
        d_model=3,
        n_experts=n_experts,
        top_k=top_k,
        score_func=score_func,
        norm_gates=norm_gates,
        balancer=Balancer([term]),
    )
    return router


def fixed_logits_router(logits_TE, **kw):
    """A router whose projection returns the given logits for inputs = identity rows."""
    T, E = logits_TE.shape
    router = make_router(n_experts=E, **kw)
    router.proj = nn.Linear(T, E, bias=False)
    with torch.no_grad():
        router.proj.weight.copy_(logits_TE.T)
    return router, torch.eye(T)


def test_top_k_uses_biased_scores_but_gates_use_unbiased():
    logits = torch.tensor([[2.0, 0.0, -1.0, -2.0], [1.0, 1.5, 0.0, -1.0]])
    router, x = fixed_logits_router(logits, bias=[0.0, 0.0, 0.0, 5.0])
    routing = router(x, batch_size=1)
    assert routing.experts_TK.flatten().tolist() == [3, 3]  # the bias decides who is chosen ...
    # ... but the gate is the chosen expert's unbiased affinity, sigmoid(logit)
    assert routing.gates_TK.flatten().tolist() == pytest.approx(torch.sigmoid(logits[:, 3]).tolist())


def test_bias_never_changes_gate_weights():
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    plain, x = fixed_logits_router(logits, top_k=2, norm_gates=True)
    biased, _ = fixed_logits_router(logits, top_k=2, norm_gates=True, bias=[0.3] * 8)  # same order, other values
    a, b = plain(x, batch_size=1), biased(x, batch_size=1)
    assert torch.equal(a.experts_TK, b.experts_TK)
    assert torch.equal(a.gates_TK, b.gates_TK)


def test_softmax_scores_and_gate_normalisation():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    router, x = fixed_logits_router(logits, top_k=2, score_func="softmax", norm_gates=True)
    routing = router(x, batch_size=1)
    assert routing.scores_TE.sum().item() == pytest.approx(1.0)
    assert routing.experts_TK.tolist() == [[2, 1]]
    p = torch.softmax(logits, -1)[0]
    assert routing.gates_TK[0].tolist() == pytest.approx([float(p[2] / (p[1] + p[2])), float(p[1] / (p[1] + p[2]))])


def test_sorted_dispatch_matches_naive_per_token_reference():
    torch.manual_seed(0)
    layer = MoELayer(
        d_model=16,
        n_routed=6,
        n_shared=1,
        top_k=2,
        expert_hidden=8,
        score_func="sigmoid",
        norm_gates=True,
        balancer=Balancer([]),
    )
    for p in layer.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 16)
    out = layer(x)
    x_TD = x.reshape(-1, 16)
    routing = layer.router(x_TD, batch_size=2)
    experts = layer.experts
    expected = []
    for t in range(x_TD.shape[0]):
        y = layer.shared(x_TD[t])
        for k in range(2):
            e = routing.experts_TK[t, k]
            H = experts.w_down_EHD.shape[1]
            w_gate, w_up = experts.w_gate_up_ED2H[e, :, :H], experts.w_gate_up_ED2H[e, :, H:]
            h = torch.nn.functional.silu(x_TD[t] @ w_gate) * (x_TD[t] @ w_up)
            y = y + routing.gates_TK[t, k] * (h @ experts.w_down_EHD[e])
        expected.append(y)
    torch.testing.assert_close(out.y_BSD.reshape(-1, 16), torch.stack(expected), rtol=1e-5, atol=1e-5)


def test_gather_only_dispatch_and_combine_have_the_values_and_gradients_of_index_add():
    from balance_lab.model.dispatch import _Combine, _Dispatch, combine, dispatch, sort_slots

    torch.manual_seed(0)
    T, K, E, D = 7, 3, 5, 4
    experts_TK = torch.stack([torch.randperm(E)[:K] for _ in range(T)])
    order_N, inverse_N = sort_slots(experts_TK)
    assert torch.equal(order_N[inverse_N], torch.arange(T * K))
    assert torch.equal(experts_TK.reshape(-1)[order_N], experts_TK.reshape(-1).sort(stable=True).values)
    scale_ND = torch.randn(T * K, D, dtype=torch.float64)  # stands in for the experts between the two

    def ours(x_TD):  # the GPU's gather-only functions, run on the CPU here
        x_ND = _Dispatch.apply(x_TD, order_N, inverse_N, K)
        return _Combine.apply(x_ND * scale_ND, order_N, inverse_N, K, torch.float64)

    def reference(x_TD):  # the index_select / index_add_ formulation
        token_N = order_N // K
        out_ND = x_TD.index_select(0, token_N) * scale_ND
        return torch.zeros_like(x_TD).index_add_(0, token_N, out_ND)

    x = torch.randn(T, D, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ours(x), reference(x))
    weights = torch.randn(T, D, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((ours(x) * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad((reference(x) * weights).sum(), x)
    torch.testing.assert_close(grad_ours, grad_ref)
    assert torch.autograd.gradcheck(ours, (x,))
    cpu_path = combine(dispatch(x, order_N, inverse_N, K) * scale_ND, order_N, inverse_N, K, torch.float64)
    torch.testing.assert_close(cpu_path, reference(x))  # what a CPU run uses: index_add_


def test_count_ids_equals_bincount():
    from balance_lab.model.router import count_ids

    ids = torch.tensor([3, 0, 3, 5, 3, 0])
    assert count_ids(ids, 7).tolist() == torch.bincount(ids, minlength=7).tolist() == [2, 0, 0, 3, 0, 1, 0]
    assert count_ids(ids, 7).dtype == torch.int64


def test_counts_are_int64_per_sequence_and_sum_to_slots():
    args = ModelArgs(
        vocab_size=256,
        seq_len=16,
        d_model=32,
        n_layers=3,
        n_heads=2,
        n_dense_layers=1,
        dense_hidden=64,
        n_routed_experts=8,
        n_shared_experts=1,
        top_k=3,
        expert_hidden=16,
    )
    model = MoELM(args, make_balancer=lambda: build_balancer({"update_rate": 1e-3}, 8))
    out = model(torch.randint(0, 256, (4, 16)))
    assert out.counts_LBE.dtype == torch.int64
    assert out.counts_LBE.shape == (2, 4, 8)
    assert (out.counts_LBE.sum(-1) == 16 * 3).all()  # every token fills K slots in every MoE layer


def test_bias_stays_fp32_under_bf16_autocast_and_casts():
    args = ModelArgs(
        vocab_size=256,
        seq_len=16,
        d_model=32,
        n_layers=2,
        n_heads=2,
        n_dense_layers=1,
        dense_hidden=64,
        n_routed_experts=8,
        top_k=2,
        expert_hidden=16,
    )
    model = MoELM(args, make_balancer=lambda: build_balancer({"update_rate": 1e-3}, 8)).to(torch.bfloat16)
    bias = model.moe_layers[0].balancer.terms[0].bias_E
    assert bias.dtype == torch.float32
    assert model.moe_layers[0].experts.w_gate_up_ED2H.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        routing = model.moe_layers[0].router(torch.randn(8, 32, dtype=torch.bfloat16), batch_size=1)
    assert routing.scores_TE.dtype == torch.float32


def test_moe_layer_never_materialises_a_tokens_by_experts_by_hidden_tensor():
    """Every tensor of a training forward + backward stays far below T x E x H elements."""
    from torch.utils._python_dispatch import TorchDispatchMode

    T, D, E, K, H = 256, 32, 16, 2, 32
    largest = []

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    largest.append((t.numel(), str(func)))
            return out

    layer = MoELayer(D, E, 1, K, H, "sigmoid", True, build_balancer({"name": "aux_loss", "alpha": 1e-3}, E)).train()
    for p in layer.parameters():
        nn.init.normal_(p, std=0.02)
    x = torch.randn(1, T, D, requires_grad=True)
    with Sizes():
        out = layer(x)
        (out.y_BSD.pow(2).mean() + out.aux_loss).backward()
    size, op = max(largest)
    # the biggest are the (E, D, 2H) weight gradient and the (T*K, 2H) hidden activations: 32,768 elements
    assert size <= max(E * D * 2 * H, T * K * 2 * H) < T * E * H, (size, op)
