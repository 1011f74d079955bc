"""Drift control's state entries: variates beside the model, split back, the correction."""

from __future__ import annotations

import pytest
import torch

from training.federated import drift
from training.federated.updates import Layout


def _state() -> dict[str, torch.Tensor]:
    return {
        "head.weight": torch.ones(2, 3),
        "head.bias": torch.zeros(2),
        "norm.running_mean": torch.zeros(2),
        "norm.num_batches_tracked": torch.tensor(4),
    }


def test_variates_join_the_state_as_float32_entries_and_split_back() -> None:
    given = {"head.weight": torch.full((2, 3), 0.5)}
    joined = drift.with_variates(_state(), ["head.bias", "head.weight"], given)
    assert torch.equal(joined["drift:head.weight"], given["head.weight"])
    assert torch.equal(joined["drift:head.bias"], torch.zeros(2))  # no variate yet: zeros
    keys = Layout.of(joined).keys
    assert keys == sorted(keys) and "drift:head.bias" in keys  # they travel like any entry
    model, variates = drift.split(joined)
    assert model.keys() == _state().keys() and set(variates) == {"head.bias", "head.weight"}


@pytest.mark.parametrize(
    ("state", "variates", "match"),
    [
        ({**_state(), "drift:x": torch.zeros(1)}, {}, "named like a variate: drift:x"),
        (_state(), {"norm.running_mean": torch.zeros(2)}, "names no federated parameter"),
        (_state(), {"head.bias": torch.zeros(3)}, r"variate of head.bias has shape \(3,\)"),
    ],
)
def test_it_refuses_variates_that_do_not_fit(
    state: dict[str, torch.Tensor], variates: dict[str, torch.Tensor], match: str
) -> None:
    with pytest.raises(drift.DriftError, match=match):
        drift.with_variates(state, ["head.bias", "head.weight"], variates)


def test_the_correction_is_the_servers_variate_minus_the_hospitals() -> None:
    server = {"w": torch.tensor([1.0, 2.0])}
    assert torch.equal(drift.correction(server, {"w": torch.tensor([0.5, 3.0])})["w"],
                       torch.tensor([0.5, -1.0]))  # fmt: skip
    first = drift.correction(server, None)  # a hospital's first round: c_i = 0
    assert torch.equal(first["w"], server["w"]) and first["w"] is not server["w"]
    with pytest.raises(drift.DriftError, match="differ in v"):
        drift.correction(server, {"v": torch.zeros(2)})
