"""The quality bench's budget: FedAvg's smaller local batches see the same images as the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.federated_quality import FULL, QUICK, Budget, budget, measure


@pytest.mark.parametrize("base", [FULL, QUICK])
def test_every_contestant_sees_the_same_images_in_more_smaller_federated_steps(
    base: Budget,
) -> None:
    assert base.images_seen(federated=True) == base.images_seen(federated=False)
    assert base.local_steps * base.federated_batch == base.steps * base.batch_size
    assert base.federated_batch < base.batch_size  # more sequential steps than rounds x S


def test_a_federated_batch_of_eight_is_the_old_budget_and_one_not_dividing_is_refused() -> None:
    old = budget(federated_batch=8)
    assert (old.local_steps, old.images_seen(True)) == (FULL.steps, FULL.images_seen(False))
    with pytest.raises(ValueError, match="federated batch 3 must divide 8"):
        budget(federated_batch=3)


def test_a_federated_contestant_scores_the_mean_of_its_order_seeds_draws(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    measured = measure(quick=True, only=("fedavg",), order_seeds=(0, 1), phantoms=tmp_path)
    draws = measured.draws["fedavg"]
    assert len(draws) == 2 and measured.scores["fedavg"] == sum(draws) / 2
    single = measure(quick=True, only=("fedavg",), phantoms=tmp_path)
    assert single.draws["fedavg"] == draws[:1]  # the default draw is order seed 0, as before
