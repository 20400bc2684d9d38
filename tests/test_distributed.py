"""Data-parallel semantics through the real Lightning DDP strategy (gloo, 2 CPU processes).

The reference is one process that sees the same global batch: the datamodule's RankSlice sampler
gives rank r the r-th block of b samples of each step, so 2 ranks x b sequences cover exactly the
first 2b samples of a step (the Trainer runs with use_distributed_sampler=False, as build_trainer's).
The ranks are forked from the test process (`ddp_fork`: Lightning's DDP with gloo all-reduces, as
`ddp_spawn`, but a rank does not import torch and Lightning again: ~2 s per test instead of ~20 on 2
cores); the last test runs the real `trainer=ddp` of the CLI, which re-executes the command per rank.
"""

import lightning as L
import pytest
import torch

from balance_lab.config.compose import compose_config
from balance_lab.training.build import build
from balance_lab.training.launcher_temp import launcher_temp_dir

pytestmark = pytest.mark.slow


class GradProbe(L.Callback):
    """Copies each MoE layer's router gradient (and global-LBL counts) into module buffers at the
    first optimizer step; buffers travel back from the spawned rank 0 with the state dict."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """The first step's counts summed over every rank (as the load history holds them)."""
        if trainer.global_step == 1 and pl_module.load_history.pending:
            pl_module.probe_reduced.copy_(pl_module.load_history.pending[0][1])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0:
            for i, layer in enumerate(pl_module.model.moe_layers):
                getattr(pl_module, f"probe_grad_{i}").copy_(layer.router.proj.weight.grad)
                for term in layer.balancer.terms:
                    if hasattr(term, "step_counts_E1"):
                        getattr(pl_module, f"probe_counts_{i}").copy_(term.step_counts_E1)


def initial(corpus_cache, balance: list[str], devices=1, batch_size=2, accumulate=1, steps=3):
    """The config's model and data as built, before any step: the same initial model in every call."""
    overrides = [
        "model=tiny",
        "model.n_layers=3",
        "model.seq_len=32",
        "trainer.max_steps=%d" % steps,
        f"trainer.devices={devices}",
        f"trainer.accumulate_grad_batches={accumulate}",
        f"data.batch_size={batch_size}",
        "data.val_sequences=6",
        f"data.cache_dir={corpus_cache}",
        *balance,
    ]
    cfg = compose_config(overrides)
    L.seed_everything(0, verbose=False)  # same initial model in every call
    return build(cfg)


def train(corpus_cache, balance: list[str], devices: int, batch_size: int, accumulate: int = 1, steps: int = 3):
    parts = initial(corpus_cache, balance, devices, batch_size, accumulate, steps)
    module, n_experts = parts.module, parts.module.model.args.n_routed_experts
    for i, layer in enumerate(module.model.moe_layers):
        module.register_buffer(f"probe_grad_{i}", torch.zeros_like(layer.router.proj.weight))
        module.register_buffer(f"probe_counts_{i}", torch.zeros(n_experts + 1, dtype=torch.int64))
    module.register_buffer("probe_reduced", torch.zeros_like(module.step_counts_LE))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_fork" if devices > 1 else "auto",
        max_steps=steps,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
        logger=False,
        callbacks=[GradProbe()],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    with launcher_temp_dir(trainer):  # as experiment._fit: the launcher's temp folder goes with the fit
        trainer.fit(module, datamodule=parts.datamodule)
    return module


def loss_free_biases(module):
    return torch.stack([layer.balancer.terms[0].bias_E for layer in module.model.moe_layers])


def probes(module, kind):
    return [getattr(module, f"probe_{kind}_{i}") for i in range(len(module.model.moe_layers))]


def test_two_forked_ranks_leave_no_temp_folder_behind(corpus_cache, tmp_path, monkeypatch):
    # Lightning's launcher writes rank 0's weights to mkdtemp()/.temp.ckpt and removes only the file.
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    train(corpus_cache, ["balance=loss_free"], devices=2, batch_size=2, steps=1)
    assert list(temp.iterdir()) == []
    assert tempfile.tempdir == str(temp)  # restored after the fit


@pytest.mark.parametrize("method", ["loss_free", "loss_free_momentum"])  # the plain bias; momentum + cap
def test_loss_free_bias_with_two_ranks_equals_one_process_on_the_global_batch(corpus_cache, method):
    # One step: afterwards the two models differ by ~1e-7 relative (gradient all-reduce vs one
    # backward), enough to flip near-ties in top-K, so later steps' counts are not comparable.
    method = [f"balance={method}", "balance.update_rate=1e-2"]
    two = train(corpus_cache, method, devices=2, batch_size=2, steps=1)
    one = train(corpus_cache, method, devices=1, batch_size=4, steps=1)
    assert loss_free_biases(two).abs().sum() > 0
    torch.testing.assert_close(loss_free_biases(two), loss_free_biases(one), rtol=0, atol=1e-6)


def test_the_orthogonality_loss_with_two_ranks_has_the_one_process_gradient(corpus_cache):
    """A term on the router weights alone: every rank computes the same loss, and DDP's mean of the
    ranks' gradients is the one-process gradient (alpha = 0: the LBL's per-micro-batch term is out)."""
    method = ["balance=aux_loss_orthogonal", "balance.alpha=0", "balance.orthogonality=10.0"]
    two = train(corpus_cache, method, devices=2, batch_size=2, steps=1)
    one = train(corpus_cache, method, devices=1, batch_size=4, steps=1)
    plain = train(corpus_cache, ["balance=none"], devices=1, batch_size=4, steps=1)
    for g2, g1, g0 in zip(probes(two, "grad"), probes(one, "grad"), probes(plain, "grad")):
        torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-7)
        assert float((g1 - g0).abs().max()) > 10 * float(g0.abs().max())  # the term dominates: it is there


def test_forced_balance_ranks_draw_their_own_experts_and_checkpoints_hold_rank_zeros_state(corpus_cache):
    """Rank 0 draws from the layer's shared generator (as one process would), rank r from a seed the
    shared state and r set; both advance the shared state alike. Identical draws on every rank
    would make the global batch's loads P times one rank's."""
    from balance_lab.model.router import Router
    from balance_lab.model.selection import uniform_choice

    two = train(corpus_cache, ["balance=forced"], devices=2, batch_size=2, steps=1)
    fresh = initial(corpus_cache, ["balance=forced"]).module  # the generators' initial states
    routers = [m for m in fresh.model.modules() if isinstance(m, Router)]
    E, K, T = fresh.model.args.n_routed_experts, fresh.model.args.top_k, 2 * 32
    for layer, router in enumerate(routers):
        shared = torch.Generator()
        shared.set_state(router.forced_rng_state)
        seed = int(torch.randint(0, 2**62, (1,), generator=shared.clone_state())) + 1
        rank1 = uniform_choice(T, E, K, torch.Generator().manual_seed(seed))
        rank0 = uniform_choice(T, E, K, shared)
        expected = torch.bincount(rank0.flatten(), minlength=E) + torch.bincount(rank1.flatten(), minlength=E)
        assert torch.equal(two.probe_reduced[layer], expected), layer
        assert not torch.equal(rank0, rank1)
        assert torch.equal(two.model.moe_layers[layer].router.forced_rng_state, shared.get_state())


def test_global_lbl_with_two_ranks_has_the_global_batch_gradient(corpus_cache):
    # alpha = 1: the balancing loss dominates the router gradient, so a wrong scale cannot hide
    big = ["balance=global_aux_loss", "balance.alpha=1.0"]
    two = train(corpus_cache, big, devices=2, batch_size=2, steps=1)
    one = train(corpus_cache, big, devices=1, batch_size=4, steps=1)
    for c2, c1 in zip(probes(two, "counts"), probes(one, "counts")):
        assert torch.equal(c2, c1) and int(c1[-1]) == 4 * 32  # counts of every rank, tokens of the global batch
    for g2, g1 in zip(probes(two, "grad"), probes(one, "grad")):
        torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-7)  # not halved by the rank count


def test_micro_batch_lbl_with_two_ranks_differs_from_the_global_batch(corpus_cache):
    big = ["balance=aux_loss", "balance.alpha=1.0"]
    two = train(corpus_cache, big, devices=2, batch_size=2, steps=1)
    one = train(corpus_cache, big, devices=1, batch_size=4, steps=1)
    differences = [
        float((g2 - g1).abs().max() / g1.abs().max()) for g2, g1 in zip(probes(two, "grad"), probes(one, "grad"))
    ]
    assert max(differences) > 1e-3, differences  # balanced per rank is not balanced per global batch


def test_capacity_and_sinkhorn_act_per_rank_and_the_dropped_fraction_counts_every_rank(corpus_cache):
    """Capacity is counted per micro-batch on one rank, and Sinkhorn balances one rank's micro-batch:
    with 2 ranks x 2 sequences, the step's dropped fraction is what each rank's 2 sequences drop on
    their own, summed over both ranks (one all-reduce), not what the 4 sequences would drop together."""
    method = ["balance=sinkhorn", "balance.capacity_factor=1.0"]
    two = train(corpus_cache, method, devices=2, batch_size=2, steps=1)

    cfg = compose_config(
        [
            "model=tiny",
            "model.n_layers=3",
            "model.seq_len=32",
            "trainer.max_steps=1",
            "data.batch_size=4",
            "data.val_sequences=6",
            f"data.cache_dir={corpus_cache}",
            *method,
        ]
    )
    L.seed_everything(0, verbose=False)  # the initial model of train()
    parts = build(cfg)
    parts.datamodule.setup("fit")
    tokens_BS = next(iter(parts.datamodule.train_dataloader()))["tokens"][:, :-1]  # rank 0's 2, then rank 1's 2
    model = parts.module.model.train()
    slots = tokens_BS.numel() * cfg.model.top_k * len(model.moe_layers)
    with torch.no_grad():
        per_rank = sum(int(model(half).dropped_L.sum()) for half in tokens_BS.split(2))
        together = int(model(tokens_BS).dropped_L.sum())
    assert per_rank > 0 and per_rank != together
    assert float(two.dropped_frac_sum) == pytest.approx(per_rank / slots, rel=1e-9)


def test_gradient_accumulation_equals_one_step_of_the_whole_batch(corpus_cache):
    accumulated = train(
        corpus_cache, ["balance=loss_free", "balance.update_rate=1e-2"], devices=1, batch_size=2, accumulate=2
    )
    whole = train(corpus_cache, ["balance=loss_free", "balance.update_rate=1e-2"], devices=1, batch_size=4)
    torch.testing.assert_close(loss_free_biases(accumulated), loss_free_biases(whole), rtol=0, atol=1e-6)
    # global LBL: at the step's last micro-batch the buffer holds exactly the whole batch's counts
    accumulated = train(corpus_cache, ["balance=global_aux_loss"], devices=1, batch_size=2, accumulate=2, steps=1)
    whole = train(corpus_cache, ["balance=global_aux_loss"], devices=1, batch_size=4, steps=1)
    for a, w in zip(probes(accumulated, "counts"), probes(whole, "counts")):
        assert torch.equal(a, w)


def test_activation_checkpointing_counts_each_token_once_per_step(corpus_cache):
    """Backward re-runs every block's forward; the counts, the loss-free bias update and the global
    LBL buffer must not see those tokens a second time, and the gradients must not change."""
    for method in (["balance=loss_free", "balance.update_rate=1e-2"], ["balance=global_aux_loss", "balance.alpha=1.0"]):
        plain = train(corpus_cache, method, devices=1, batch_size=4, accumulate=2, steps=1)
        recomputed = train(
            corpus_cache,
            [*method, "model.activation_checkpointing=true"],
            devices=1,
            batch_size=4,
            accumulate=2,
            steps=1,
        )
        for c, r in zip(probes(plain, "counts"), probes(recomputed, "counts")):
            assert torch.equal(c, r)
        for g, r in zip(probes(plain, "grad"), probes(recomputed, "grad")):
            torch.testing.assert_close(r, g, rtol=1e-5, atol=1e-8)
        if "balance=loss_free" in method:
            assert loss_free_biases(plain).abs().sum() > 0
            torch.testing.assert_close(loss_free_biases(recomputed), loss_free_biases(plain), rtol=0, atol=0)


def test_balance_lab_run_with_trainer_ddp_on_two_cpu_processes_is_one_run_equal_to_one_process(store):
    """`trainer=ddp` through the CLI: Lightning re-executes the command for rank 1, which must not
    record a run of its own; 2 ranks x 2 sequences train what 1 process with 4 sequences trains."""
    from tests.helpers.runners import cli_in_new_process, run_in_this_process
    from tests.helpers.stores import all_runs

    common = [
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "data.val_sequences=12",
        "model.n_layers=3",
        "model.seq_len=32",
        "trainer.enable_progress_bar=false",
        "balance.update_rate=1e-2",
    ]
    two = cli_in_new_process(
        "run", "trainer=ddp", "trainer.devices=2", "data.batch_size=2", *common, "logger.run_name=two"
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_in_this_process("trainer.devices=1", "data.batch_size=4", *common, "logger.run_name=one")
    assert one.returncode == 0, one.stderr[-3000:]
    runs = {r.info.run_name: r for r in all_runs(store)}
    assert sorted(runs) == ["one", "two"] and all(r.info.status == "FINISHED" for r in runs.values())
    assert runs["two"].data.params["trainer.strategy"] == "ddp"
    for key in ("val/loss", "val/maxvio_global", "train/maxvio_batch_mean"):
        assert runs["two"].data.metrics[key] == pytest.approx(runs["one"].data.metrics[key], rel=1e-3), key
