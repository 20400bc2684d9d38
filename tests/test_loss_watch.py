"""The NaN/inf stop reads each step's losses one step late (no host sync per step), never later."""

import pytest
import torch

from balance_lab.errors import NonFiniteLoss
from balance_lab.training.loss_watch import LossWatch


def losses(*values):
    return torch.tensor([[v, v, 0.0] for v in values])


def test_a_non_finite_step_is_reported_at_the_next_record_with_its_own_step():
    watch = LossWatch()
    watch.record(0, losses(2.0, 2.1))
    watch.record(1, losses(1.9, float("inf")))  # not read yet: the copy may still be in flight
    with pytest.raises(NonFiniteLoss, match=r"train/loss is inf at step 1 \(lm_loss inf"):
        watch.record(2, losses(float("nan")))


def test_check_now_reads_the_last_record_and_clears_it():
    watch = LossWatch()
    watch.record(4, losses(1.0))
    watch.check_now()  # finite: nothing
    watch.record(5, losses(float("nan")))
    with pytest.raises(NonFiniteLoss, match="at step 5"):
        watch.check_now()
    watch.check_now()  # nothing pending any more
