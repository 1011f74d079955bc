"""Drift control's variates: a mean step per unit of rate, and the correction c - c_i."""

from __future__ import annotations

import pytest
import torch

from training.federated import drift


def test_a_variate_is_the_update_per_step_and_unit_of_rate_reversed() -> None:
    delta = {"w": torch.tensor([0.02, -0.04]), "b": torch.tensor([0.5]), "bn.mean": torch.ones(1)}
    variate = drift.direction(delta, ["w", "b"], steps=4, lr=0.01)
    assert set(variate) == {"w", "b"}  # parameters only: buffers are not steered
    assert torch.allclose(variate["w"], torch.tensor([-0.5, 1.0]))
    assert variate["w"].dtype == torch.float32
    with pytest.raises(drift.DriftError, match="no entry for parameter c"):
        drift.direction(delta, ["c"], steps=4, lr=0.01)
    for steps, lr in [(0, 0.01), (4, 0.0), (4, float("nan"))]:
        with pytest.raises(drift.DriftError, match="steps >= 1 and a positive rate"):
            drift.direction(delta, ["w"], steps=steps, lr=lr)


def test_the_correction_is_the_consortiums_variate_minus_the_hospitals() -> None:
    consortium = {"w": torch.tensor([1.0, 2.0])}
    own = {"w": torch.tensor([0.5, 3.0])}
    assert torch.equal(drift.correction(consortium, own)["w"], torch.tensor([0.5, -1.0]))
    first = drift.correction(consortium, None)  # no variate of its own yet: c_i = 0
    assert torch.equal(first["w"], consortium["w"]) and first["w"] is not consortium["w"]
    with pytest.raises(drift.DriftError, match="differ in v"):
        drift.correction(consortium, {"v": torch.zeros(2)})
