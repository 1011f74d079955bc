"""The server's step: the aggregate scaled by a constant rate, bit-exact, integers untouched."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.federated.federated_helpers import SmallNet, small_base
from training.federated.server import round_server_lr, server_step
from training.federated.updates import Layout, apply_delta


def _delta(base: dict[str, torch.Tensor], layout: Layout, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(base[k].shape, generator=generator) for k in layout.keys}


def test_a_rate_of_one_is_plain_fedavg_bit_for_bit() -> None:
    base = small_base()
    layout = Layout.of(base)
    delta = _delta(base, layout)
    plain = apply_delta(base, delta, layout)
    stepped = server_step(base, delta, layout, server_lr=1.0)
    assert plain.keys() == stepped.keys()
    assert all(torch.equal(plain[k], stepped[k]) for k in plain)


def test_a_rate_scales_the_aggregate_and_leaves_integer_buffers_alone() -> None:
    base = small_base()
    base["bn.num_batches_tracked"] = torch.tensor(7)
    layout = Layout.of(base)
    delta = _delta(base, layout)
    stepped = server_step(base, delta, layout, server_lr=3.0)
    for key in layout.keys:  # float32 multiply, then float32 add: the same on any machine
        expected = base[key] + delta[key] * torch.tensor(3.0, dtype=torch.float32)
        assert stepped[key].dtype == torch.float32 and torch.equal(stepped[key], expected)
        assert not torch.equal(stepped[key], apply_delta(base, delta, layout)[key])
    assert int(stepped["bn.num_batches_tracked"]) == 7
    again = server_step(base, delta, layout, server_lr=3.0)
    assert all(torch.equal(again[k], stepped[k]) for k in stepped)  # no state between calls


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_it_refuses_a_rate_that_is_not_a_positive_number(rate: float) -> None:
    base = small_base()
    layout = Layout.of(base)
    with pytest.raises(ValueError, match="server learning rate must be a positive number"):
        server_step(base, _delta(base, layout), layout, server_lr=rate)


def test_running_statistics_move_by_the_mean_alone() -> None:
    base = small_base()
    layout = Layout.of(base)
    delta = _delta(base, layout)
    parameters = {name for name, _ in SmallNet().named_parameters()}
    stepped = server_step(base, delta, layout, server_lr=3.0, parameters=parameters)
    for key in layout.keys:  # BatchNorm's running mean and variance move by the mean alone
        move = delta[key] * torch.tensor(3.0) if key in parameters else delta[key]
        assert torch.equal(stepped[key], base[key] + move), key
    assert {"bn.running_mean", "bn.running_var"} <= set(layout.keys) - parameters


def test_a_ramp_starts_at_one_and_reaches_the_rate_at_its_last_round() -> None:
    rates = [round_server_lr(3.0, r, ramp_rounds=4) for r in range(7)]
    assert rates == [1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0]
    assert [round_server_lr(3.0, r) for r in range(3)] == [3.0, 3.0, 3.0]  # no ramp: constant
    with pytest.raises(ValueError, match="ramp must be 0 or more rounds"):
        round_server_lr(3.0, 0, ramp_rounds=-1)
