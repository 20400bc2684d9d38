"""model.compile: each transformer block torch.compile'd (on a GPU by default, model/compiling.py).

The GPU formulation (grouped matmul, gather-only dispatch) runs here on the CPU under bf16
autocast, and the blocks are compiled with the aot_eager backend: it traces the same graphs
(Dynamo + AOTAutograd) that inductor would turn into kernels, in seconds rather than minutes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from balance_lab.config.compose import compose_config
from balance_lab.model import compiling, dispatch, experts, moe
from balance_lab.training.build import build_model

SMALL = [
    "model.n_layers=3",
    "model.d_model=64",
    "model.n_heads=2",
    "model.vocab_size=512",
    "model.seq_len=32",
    "model.expert_hidden=32",
    "model.dense_hidden=128",
]


@pytest.fixture
def gpu_formulation(monkeypatch):
    """What MoELayer runs on CUDA: torch._grouped_mm experts, gather-only dispatch and combine."""
    monkeypatch.setattr(experts, "_grouped_mm_supported", lambda x: True)
    monkeypatch.setattr(moe, "dispatch", lambda x, o, i, K: dispatch._Dispatch.apply(x, o, i, K))
    monkeypatch.setattr(moe, "combine", lambda out, o, i, K, dtype: dispatch._Combine.apply(out, o, i, K, dtype))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def small_model(balance: str, *overrides: str):
    torch.manual_seed(0)
    return build_model(compose_config(["model=tiny", f"balance={balance}", *SMALL, *overrides]))


def test_auto_compiles_for_a_gpu_trainer_only():
    assert not compiling.wanted("auto", "cpu") and compiling.wanted("auto", "gpu") and compiling.wanted("auto", "cuda")
    assert compiling.wanted(True, "cpu") and not compiling.wanted(False, "gpu")
    with pytest.raises(ValueError, match="model.compile='maybe': choose one of auto, true, false"):
        compiling.wanted("maybe", "gpu")
    model = small_model("loss_free")  # trainer=cpu: eager, as every CPU run before compile existed
    assert all(getattr(block, "_compiled_call_impl", None) is None for block in model.blocks)
    model = small_model("loss_free", "model.compile=true")
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    assert set(model.state_dict()) == set(small_model("loss_free").state_dict())  # checkpoints interchange
    assert not model.graph_steps  # the default mode records no CUDA graphs
    graphed = small_model("loss_free", "model.compile=true", "model.compile_mode=reduce-overhead")
    assert all(block._compiled_call_impl is not None for block in graphed.blocks) and graphed.graph_steps
    with pytest.raises(ValueError, match="model.compile_mode='fast': choose one of default, reduce-overhead"):
        compiling.compile_blocks(graphed, mode="fast")


def test_compiling_is_not_part_of_what_a_run_trains():
    """A sweep re-run skips FINISHED runs by config hash: compiled or eager, and runs recorded before
    the knob existed, are the same experiment (as the thread count is)."""
    from omegaconf import OmegaConf

    from balance_lab.store.tracking import config_hash

    resolved = OmegaConf.to_container(compose_config(["model=tiny"]), resolve=True)
    before_the_knobs = {**resolved, "model": {k: v for k, v in resolved["model"].items() if "compile" not in k}}
    compiled = {**resolved, "model": {**resolved["model"], "compile": True}}
    graphed = {**resolved, "model": {**resolved["model"], "compile": True, "compile_mode": "reduce-overhead"}}
    assert config_hash(resolved) == config_hash(before_the_knobs) == config_hash(compiled) == config_hash(graphed)
    assert config_hash({**resolved, "model": {**resolved["model"], "d_model": 64}}) != config_hash(resolved)


@pytest.mark.parametrize("balance", ["loss_free", "aux_loss", "seq_aux_loss"])
def test_an_moe_block_compiles_to_one_graph(gpu_formulation, balance):
    """No graph break in the MoE block: routing, counts, dispatch, experts and the loss fuse together."""
    model = small_model(balance).train()
    x_BSD = model.embed(torch.randint(0, 512, (2, 32)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model.blocks[1])(x_BSD)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def train_twice(model, tokens_BS):
    """Two forward+backward passes (bf16 autocast, as trainer=gpu); the second pass's loss,
    counts and gradients, and the model's buffers after both."""
    for _ in range(2):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(tokens_BS)
            loss = out.logits_BSV.float().logsumexp(-1).mean() + out.aux_loss
        loss.backward()
    grads = [p.grad.float() for p in model.parameters()]
    return loss.detach(), out.counts_LBE, grads, {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize("balance, checkpointing", [("loss_free", "false"), ("global_aux_loss", "true")])
def test_compiled_blocks_train_as_eager_ones(gpu_formulation, balance, checkpointing):
    """Same loss, routing, gradients and balancer state. The global aux loss under activation
    checkpointing is the hard case: its count buffer must grow once per micro-batch, not again in
    the recompute (a compiled graph around that check once differed between the two passes)."""
    eager = small_model(balance, f"model.activation_checkpointing={checkpointing}").train()
    compiled = copy.deepcopy(eager)
    compiling.compile_blocks(compiled, backend="aot_eager")
    tokens_BS = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(1))
    (loss_e, counts_e, grads_e, bufs_e), (loss_c, counts_c, grads_c, bufs_c) = (
        train_twice(eager, tokens_BS),
        train_twice(compiled, tokens_BS),
    )
    assert loss_c.item() == pytest.approx(loss_e.item(), rel=1e-6)
    assert torch.equal(counts_c, counts_e)
    assert max((gc - ge).abs().max().item() for gc, ge in zip(grads_c, grads_e)) < 1e-3
    assert all(torch.equal(bufs_c[k], bufs_e[k]) for k in bufs_e)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # evaluation: a second graph per block
        assert torch.allclose(
            compiled.eval()(tokens_BS).logits_BSV.float(), eager.eval()(tokens_BS).logits_BSV.float(), atol=1e-2
        )
