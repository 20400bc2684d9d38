"""Step-end semantics of the LightningModule with a real Trainer: once per optimizer step, summed
over micro-batches; validation and no-grad forwards never touch counters or biases."""

import lightning as L
import pandas as pd
import pytest
import torch

from balance_lab.config.compose import compose_config
from balance_lab.metrics import maxvio_per_layer
from balance_lab.training.build import build


@pytest.fixture
def built(corpus_cache):
    overrides = [
        "model=tiny",
        "model.n_layers=3",
        "balance=loss_free",
        "trainer.max_steps=3",
        "trainer.accumulate_grad_batches=2",
        "data.batch_size=2",
        "data.val_sequences=6",
        f"data.cache_dir={corpus_cache}",
    ]
    cfg = compose_config(overrides)
    return cfg, build(cfg)


def trainer(cfg, **kw):
    return L.Trainer(
        accelerator="cpu",
        max_steps=cfg.trainer.max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        **kw,
    )


def biases(module):
    return [layer.balancer.terms[0].bias_E.clone() for layer in module.model.moe_layers]


def test_balancer_updates_once_per_optimizer_step_with_all_micro_batches(built):
    cfg, parts = built
    calls = []
    for layer in parts.module.model.moe_layers:
        original = layer.balancer.step_end
        layer.balancer.step_end = lambda counts, f=original: (calls.append(counts.clone()), f(counts))[1]
    trainer(cfg, limit_val_batches=0).fit(parts.module, datamodule=parts.datamodule)
    n_moe = len(parts.module.model.moe_layers)
    assert len(calls) == 3 * n_moe  # 3 optimizer steps, not 6 micro-batches
    slots = 2 * 2 * cfg.model.seq_len * cfg.model.top_k  # 2 micro-batches x 2 sequences x S tokens x K
    assert all(c.dtype == torch.int64 and int(c.sum()) == slots for c in calls)
    assert all(not torch.equal(b, torch.zeros_like(b)) for b in biases(parts.module))
    assert int(parts.module.step_counts_LE.sum()) == 0  # reset after each step
    # the run's load history holds exactly the counts each step's update used, every slot once
    history = parts.module.load_history.frame()
    assert sorted(set(history["step"])) == [1, 2, 3] and set(history["steps"]) == {1}
    for i, counts_E in enumerate(calls):
        step, layer = i // n_moe + 1, parts.module.layer_ids[i % n_moe]
        rows = history[(history["step"] == step) & (history["layer"] == layer)].sort_values("expert")
        assert rows["tokens"].tolist() == counts_E.tolist()
    assert int(history["tokens"].sum()) == 3 * slots * n_moe


def test_validation_and_no_grad_forwards_leave_counters_and_biases_alone(built):
    cfg, parts = built
    module = parts.module
    module.model.moe_layers[0].balancer.step_end(torch.arange(16))  # some non-trivial bias
    before = biases(module)
    trainer(cfg).validate(module, datamodule=parts.datamodule, verbose=False)
    module.model.train()
    with torch.no_grad():
        out = module.model(torch.randint(0, 256, (2, 16)))
    assert out.aux_loss.item() == 0.0  # no balancing loss outside a training forward with grad
    assert int(module.step_counts_LE.sum()) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, biases(module)))
    assert module.val_loads is not None and sum(map(sum, module.val_loads["layers"])) > 0


def test_run_averaged_maxvio_is_the_mean_over_every_optimizer_step(built):
    cfg, parts = built
    module, per_step = parts.module, []
    original = module.on_before_optimizer_step

    def record(optimizer):
        counts_LE = module.step_counts_LE.clone()
        per_step.append(maxvio_per_layer(counts_LE).mean().item())
        original(optimizer)

    module.on_before_optimizer_step = record
    fit = trainer(cfg)
    fit.fit(module, datamodule=parts.datamodule)  # validates once, at the end of the 3 steps
    assert len(per_step) == 3 and int(module.vio_steps) == 3
    assert fit.callback_metrics["train/maxvio_batch_mean"].item() == pytest.approx(sum(per_step) / 3, rel=1e-5)
    assert "train/maxvio_compute_batch_mean" in fit.callback_metrics


def test_dropped_fraction_per_step_run_mean_and_validation(corpus_cache):
    """Capacity 0.5: each step's fraction of dropped slots, their run mean, and validation's own
    (validation drops at the same capacity); the loads the balancer gets stay the router's choice."""
    cfg = compose_config(
        [
            "model=tiny",
            "model.n_layers=3",
            "balance=loss_free",
            "balance.capacity_factor=0.5",
            "trainer.max_steps=3",
            "trainer.accumulate_grad_batches=2",
            "data.batch_size=2",
            "data.val_sequences=6",
            f"data.cache_dir={corpus_cache}",
        ]
    )
    module = build(cfg).module
    datamodule = build(cfg).datamodule
    per_step, slots = [], []
    original = module.on_before_optimizer_step

    def record(optimizer):
        dropped, routed = module.step_dropped_2.tolist()
        per_step.append(dropped / routed)
        slots.append(int(module.step_counts_LE.sum()))
        original(optimizer)

    module.on_before_optimizer_step = record
    fit = trainer(cfg)
    fit.fit(module, datamodule=datamodule)
    n_moe = len(module.model.moe_layers)
    assert slots == [2 * 2 * cfg.model.seq_len * cfg.model.top_k * n_moe] * 3  # counted before dropping
    assert all(f >= 0.5 for f in per_step)  # capacity for half the mean load drops at least half the slots
    assert fit.callback_metrics["train/dropped_frac_mean"].item() == pytest.approx(sum(per_step) / 3, rel=1e-6)
    assert fit.callback_metrics["val/dropped_frac"].item() >= 0.5


def test_a_checkpoint_from_before_the_dropped_counter_still_loads(built):
    """Checkpoints written before `dropped_frac_sum` existed lack it; resuming them must not fail
    Lightning's strict state-dict load (the counter starts at zero: those runs had no capacity)."""
    cfg, parts = built
    old = {"state_dict": {k: v for k, v in parts.module.state_dict().items() if k != "dropped_frac_sum"}}
    with pytest.raises(RuntimeError, match="dropped_frac_sum"):
        parts.module.load_state_dict(old["state_dict"])  # what a strict load says without the hook
    parts.module.on_load_checkpoint(old)
    parts.module.load_state_dict(old["state_dict"])
    assert float(parts.module.dropped_frac_sum) == 0.0


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_fused_optimizer_is_clipped_by_the_module(built, algorithm):
    """Lightning refuses to clip gradients for a fused optimizer under mixed precision; the module
    clips them itself (a fused AdamW is chosen on a GPU without a gradient scaler)."""
    module = built[1].module
    params = list(module.parameters())
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    fused = torch.optim.AdamW(params, fused=True)
    module.configure_gradient_clipping(fused, gradient_clip_val=1.0, gradient_clip_algorithm=algorithm)
    if algorithm == "norm":
        assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item() == pytest.approx(
            1.0, rel=1e-3
        )
    else:
        assert all(p.grad.max().item() == 1.0 for p in params)
    for p in params:
        p.grad = None


@pytest.mark.parametrize(
    "method",
    [
        ["balance=quantile_ema"],
        ["balance=loss_free_momentum", "balance.warmup_steps=1", "balance.schedule=cosine"],
        ["balance=forced"],
        ["balance=aux_loss_orthogonal"],
    ],
    ids=lambda m: m[0].removeprefix("balance="),
)
def test_the_2026_methods_resume_from_a_checkpoint_to_the_numbers_of_a_run_never_interrupted(
    corpus_cache, tmp_path, method
):
    """4 steps straight vs 2 steps, a checkpoint, a new process's module, 2 more steps: every buffer
    (QB's beta and EMA, the momentum's load EMA and step, forced balance's generator state, the
    load history) and every weight end the same."""
    overrides = ["model=tiny", "model.n_layers=3", "data.batch_size=2", "data.val_sequences=6", *method]
    overrides.append(f"data.cache_dir={corpus_cache}")

    def fresh(steps: int):
        cfg = compose_config([*overrides, f"trainer.max_steps={steps}"])
        L.seed_everything(0, verbose=False)
        return cfg, build(cfg)

    cfg, straight = fresh(4)
    trainer(cfg, limit_val_batches=0).fit(straight.module, datamodule=straight.datamodule)
    _, first = fresh(4)  # a run of 4 steps (its schedules' horizon) stopped after 2
    leg = trainer(compose_config([*overrides, "trainer.max_steps=2"]), limit_val_batches=0)
    leg.fit(first.module, datamodule=first.datamodule)
    leg.save_checkpoint(tmp_path / "last.ckpt")
    _, second = fresh(4)
    trainer(cfg, limit_val_batches=0).fit(second.module, datamodule=second.datamodule, ckpt_path=tmp_path / "last.ckpt")
    want, got = straight.module.state_dict(), second.module.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-7, msg=key)
    pd.testing.assert_frame_equal(second.module.load_history.frame(), straight.module.load_history.frame())
