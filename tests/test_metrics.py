import pytest
import torch

from balance_lab.metrics import maxvio, maxvio_per_layer, top_expert_frequency


def test_perfect_balance_is_zero():
    assert maxvio([[10, 10, 10, 10]]) == 0.0


def test_all_tokens_on_one_expert():
    # mean 10, max 40: (40 - 10) / 10
    assert maxvio([[40, 0, 0, 0]]) == pytest.approx(3.0)


def test_averaged_over_layers():
    # layer 0: mean 3, max 6 -> 1.0; layer 1: balanced -> 0.0
    loads = [[1, 2, 3, 6], [5, 5, 5, 5]]
    assert maxvio_per_layer(torch.tensor(loads)).tolist() == pytest.approx([1.0, 0.0])
    assert maxvio(loads) == pytest.approx(0.5)


def test_layer_without_tokens_scores_zero_not_nan():
    assert maxvio([[0, 0, 0], [3, 0, 0]]) == pytest.approx(1.0)  # (0 + 2) / 2


def test_integer_counts_are_exact():
    # int64 loads beyond 2**24 (where fp32 stops counting by one) still give the exact figure
    loads = torch.tensor([[2**25 + 1, 2**25 - 1]], dtype=torch.int64)
    assert maxvio(loads) == pytest.approx(1 / 2**25, rel=1e-9)


def test_top_expert_frequency():
    counts = torch.tensor([[30, 10, 0, 0], [10, 10, 10, 10]])  # 40 tokens, top-1
    assert top_expert_frequency(counts, tokens=40).tolist() == pytest.approx([0.75, 0.25])
