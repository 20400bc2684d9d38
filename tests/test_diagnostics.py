"""The routing records of a run (diagnostics/): every step's loads kept under a row cap and through
a checkpoint, and the routing trace equal to what the routers decided in the same forward pass."""

import numpy as np
import pandas as pd
import pytest
import torch

from balance_lab.diagnostics.artifacts import ARTIFACT_DIR, HISTORY_FILE
from balance_lab.diagnostics.expert_parallel import ep_degrees, reference_degree
from balance_lab.diagnostics.load_history import LoadHistory, read
from balance_lab.diagnostics.trace import RoutingTrace
from balance_lab.model import MoELM
from balance_lab.model.args import ModelArgs
from balance_lab.model.router import Router
from balance_lab.report import collect, history
from tests.helpers.groups import SWEPT_GROUP

LAYERS, EXPERTS = [1, 2], 4
HISTORY = f"{ARTIFACT_DIR}/{HISTORY_FILE}"


def step_counts(step: int) -> torch.Tensor:
    """(L, E) counts that differ per step and layer (so a misplaced step shows)."""
    return torch.arange(LAYERS.__len__() * EXPERTS).view(len(LAYERS), EXPERTS) + 100 * step


def test_past_the_row_cap_rows_merge_pairwise_keeping_every_slot_and_every_step():
    history = LoadHistory(LAYERS, EXPERTS, max_rows=4)
    for step in range(1, 12):
        history.record(step, step_counts(step))
        if step % 3 == 0:
            history.flush()
    first, steps, layer_ids, counts = read_frame(history.frame())
    assert len(first) <= 4 and layer_ids == LAYERS
    # contiguous: each row starts where the last ended, from step 1 to step 11
    assert first[0] == 1 and list(first[1:]) == list(first[:-1] + steps[:-1]) and first[-1] + steps[-1] == 12
    assert list(steps) == [4, 4, 3]  # merged twice (span 4), the last row still filling
    want = torch.stack([step_counts(s) for s in range(1, 12)]).sum(dim=0).numpy()
    assert np.array_equal(counts.sum(axis=0), want)  # every slot of the run, merged or not
    assert np.array_equal(counts[0], torch.stack([step_counts(s) for s in range(1, 5)]).sum(dim=0).numpy())


def test_a_history_continued_from_its_checkpoint_equals_one_never_interrupted():
    whole, first_leg = LoadHistory(LAYERS, EXPERTS, max_rows=4), LoadHistory(LAYERS, EXPERTS, max_rows=4)
    for step in range(1, 10):
        whole.record(step, step_counts(step))
        if step <= 6:
            first_leg.record(step, step_counts(step))
    saved = first_leg.state_dict()  # flushes the pending steps
    resumed = LoadHistory(LAYERS, EXPERTS, max_rows=4)
    resumed.load_state_dict(saved)
    for step in range(7, 10):
        resumed.record(step, step_counts(step))
    pd.testing.assert_frame_equal(resumed.frame(), whole.frame())
    resumed.record(9, step_counts(9))
    with pytest.raises(ValueError, match="step 9 recorded again"):
        resumed.flush()


def read_frame(frame: pd.DataFrame):
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return read(buffer)


def test_the_trace_rows_are_the_routing_of_the_forward_pass():
    torch.manual_seed(0)
    args = ModelArgs(
        vocab_size=64, seq_len=8, d_model=16, n_layers=3, n_heads=2, n_dense_layers=1, dense_hidden=32,
        n_routed_experts=8, n_shared_experts=1, top_k=2, expert_hidden=8,
    )  # fmt: skip
    from balance_lab.balancing import build_balancer

    balance = {"name": "lf", "update_rate": 1e-2, "alpha": 0.0}
    model = MoELM(args, make_balancer=lambda: build_balancer(balance, 8)).eval()
    decided, routers = [], [m for m in model.modules() if isinstance(m, Router)]
    hooks = [m.register_forward_hook(lambda m, i, out: decided.append(out)) for m in routers]
    tokens_BS, domain_B = torch.randint(0, 64, (3, 8)), torch.tensor([1, 0, 1])
    with torch.no_grad():
        out = model(tokens_BS, trace=True)
    for hook in hooks:
        hook.remove()
    trace = RoutingTrace(args.moe_layer_ids, ["code", "prose"], every=1, tokens=20, max_rows=10**6)
    assert trace.add("val", 5, tokens_BS, domain_B, out.experts_LTK, out.gates_LTK) == 20  # 2.5 sequences
    frame = trace.frame()
    assert len(frame) == 20 * 2 * 2  # tokens x layers x K
    for layer_id, routing in zip(args.moe_layer_ids, decided):
        rows = frame[frame["layer"] == layer_id]
        assert np.array_equal(rows["expert"].to_numpy(), routing.experts_TK[:20].reshape(-1).numpy())
        assert np.allclose(rows["gate"].to_numpy(), routing.gates_TK[:20].reshape(-1).numpy())
        assert np.array_equal(rows["token"].to_numpy()[::2], tokens_BS.reshape(-1)[:20].numpy())
    first = frame[frame["layer"] == args.moe_layer_ids[0]].iloc[::2]
    assert list(first["sequence"])[:9] == [0] * 8 + [1] and list(first["position"])[:9] == [*range(8), 0]
    assert list(first["domain"])[:9] == ["prose"] * 8 + ["code"] and set(frame["split"]) == {"val"}
    assert set(frame["step"]) == {5}


def test_the_trace_stops_at_its_row_cap_and_survives_a_checkpoint():
    trace = RoutingTrace([1], ["a"], every=2, tokens=4, max_rows=10)
    experts, gates = torch.zeros(1, 4, 2, dtype=torch.int64), torch.ones(1, 4, 2)
    tokens, domain = torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    assert trace.wants_step(2) and not trace.wants_step(3)
    assert trace.add("train", 2, tokens, domain, experts, gates) == 4  # 8 rows
    assert trace.add("train", 4, tokens, domain, experts, gates) == 0 and trace.full and not trace.wants_step(6)
    again = RoutingTrace([1], ["a"], every=2, tokens=4, max_rows=10)
    again.load_state_dict(trace.state_dict())
    pd.testing.assert_frame_equal(again.frame(), trace.frame())
    assert again.full


@pytest.mark.slow
@SWEPT_GROUP
def test_every_run_records_its_step_loads_and_the_report_draws_them(swept):
    """Each run's loads/steps.parquet holds every routed slot of the run (steps x sequences x tokens
    x K per MoE layer), and the report draws a heatmap per configuration and the straggler plot."""
    from mlflow.tracking import MlflowClient

    runs = collect.load_sweep(swept.uri, "paper_main").finished
    client = MlflowClient(swept.uri)
    for row in runs.itertuples():
        params = client.get_run(row.run_id).data.params
        with collect.local_artifact(row.artifact_uri, row.run_id, HISTORY, swept.uri) as parquet:
            first, steps, layer_ids, counts = read(parquet)
        n_moe = int(params["model.n_layers"]) - int(params["model.n_dense_layers"])
        slots = int(params["data.batch_size"]) * int(params["model.seq_len"]) * int(params["model.top_k"])
        assert list(first) == list(range(1, int(params["trainer.max_steps"]) + 1)) and set(steps) == {1}
        assert counts.shape[1] == n_moe and (counts.sum(axis=(1, 2)) == slots * n_moe).all()
    markdown = (swept.reports / "report.md").read_text()
    assert "### Straggler factor over training" in markdown
    for label in runs["label"].unique():
        assert f"### Expert load over training: {label} (lowest seed)" in markdown
    assert len(list((swept.reports / "plots" / "load_history").glob("*.png"))) == runs["label"].nunique()


@SWEPT_GROUP
def test_configurations_whose_runs_predate_the_load_history_are_left_out_of_its_figures(swept, tmp_path):
    runs = collect.load_sweep(swept.uri, "paper_main").finished
    old_label, new_label = sorted(runs["label"].unique())
    runs.loc[runs["label"] == old_label, "artifact_uri"] = str(tmp_path)  # as a run from before: no such artifact
    drawn = history.load_history_plots(runs, [old_label, new_label], swept.uri, tmp_path)
    assert list(drawn) == [f"{history.HISTORY_PREFIX}{new_label}"] and all(p.exists() for p in drawn.values())


def test_a_validation_trace_takes_every_stride_th_sequence_with_its_index_in_the_set():
    trace = RoutingTrace([1], ["a", "b"], every=1, tokens=100, max_rows=10**6)
    tokens_BS = torch.arange(12).view(4, 3)
    experts, gates = torch.arange(12).view(1, 12, 1), torch.ones(1, 12, 1)
    # batch 1 of the set (sequences 4-7), every 3rd sequence of the set: sequence 6 only (row 2)
    assert trace.add("val", 0, tokens_BS, torch.tensor([0, 0, 1, 1]), experts, gates, 100, 4, 3) == 3
    frame = trace.frame()
    assert list(frame["sequence"]) == [6] * 3 and list(frame["position"]) == [0, 1, 2]
    assert list(frame["token"]) == [6, 7, 8] and list(frame["expert"]) == [6, 7, 8]
    assert list(frame["domain"]) == ["b"] * 3


def test_the_straggler_degrees_follow_the_config_list_or_default_to_the_powers_of_two():
    from balance_lab.config.compose import compose_config
    from balance_lab.config.validation import check_diagnostics

    assert check_diagnostics(compose_config(["diagnostics.ep_degrees=[16,2,2]"])).ep_degrees == (2, 16)
    assert check_diagnostics(compose_config([])).ep_degrees is None
    assert ep_degrees(16) == [2, 4, 8, 16] and reference_degree(16) == 8 and reference_degree(12) == 4


def test_a_heatmap_that_cannot_be_drawn_leaves_the_data_logged_and_says_so(tmp_path, capsys):
    """The run trained: a failure to draw its picture (here a folder where the PNG goes) is one line."""
    from types import SimpleNamespace

    from balance_lab.diagnostics.artifacts import HISTORY_PLOT, log_routing_records

    history = LoadHistory(LAYERS, EXPERTS, max_rows=8)
    history.record(1, step_counts(1))
    logged = []
    run = SimpleNamespace(client=object(), log_file=lambda path, folder: logged.append(f"{folder}/{path.name}"))
    (tmp_path / ARTIFACT_DIR / HISTORY_PLOT).mkdir(parents=True)  # savefig cannot write there
    log_routing_records(SimpleNamespace(load_history=history, trace=None), run, tmp_path, "a run")
    assert logged == [HISTORY]
    assert "the load heatmap was not drawn" in capsys.readouterr().out
