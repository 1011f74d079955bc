"""The server's step: how far the global model moves along a round's aggregate.

``next = base + server_lr * aggregate`` on the federated entries (float32, element by
element: bit-exact on any machine, and every participant recomputes it from the
aggregate it already checked). ``server_lr`` is a constant of the federation, with no
state between rounds: Flower's FedAvgM ``server_learning_rate`` with ``server_momentum``
at 0. At 1 this is plain FedAvg.

Why above 1: with H hospitals of S local steps each, averaging their deltas moves the
model about as far as S steps of one H-times larger batch, while centralized training
on the pooled data takes H x S steps for the same images seen. A rate near H makes a
round's move about the sum of the hospitals' moves instead (docs/federated.md,
"Quality bench", measures it).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import torch

from training.federated.updates import Layout, StateDict, apply_delta

DEFAULT_SERVER_LR = 1.0


def check_server_lr(server_lr: float) -> float:
    """``server_lr`` as a float, refused unless finite and positive."""
    value = float(server_lr)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"server learning rate must be a positive number, not {server_lr}")
    return value


def round_server_lr(server_lr: float, round_index: int, ramp_rounds: int = 0) -> float:
    """The server rate of round ``round_index`` (from 0): 1 in the first round, rising in
    a straight line to ``server_lr`` at round ``ramp_rounds`` and held there.

    Why a ramp: AdamW's first moves are sign-like, as large as its rate on every
    coordinate, and a multiple of their mean overshoots (docs/federated.md, "Quality
    bench"). A function of the round index alone keeps the step stateless and bit-exact.
    """
    rate = check_server_lr(server_lr)
    if ramp_rounds < 0:
        raise ValueError(f"server rate ramp must be 0 or more rounds, not {ramp_rounds}")
    if ramp_rounds == 0 or round_index >= ramp_rounds:
        return rate
    return 1.0 + (rate - 1.0) * round_index / ramp_rounds


def server_step(
    base: StateDict,
    delta: Mapping[str, torch.Tensor],
    layout: Layout,
    *,
    server_lr: float = DEFAULT_SERVER_LR,
    parameters: Collection[str] | None = None,
    local: StateDict | None = None,
) -> dict[str, torch.Tensor]:
    """The next global model: ``apply_delta`` of the aggregate, ``parameters``' entries
    scaled by ``server_lr`` (all entries when ``parameters`` is None).

    Floating buffers (BatchNorm's running mean and variance) belong outside
    ``parameters``: they are estimates, not steps, and the hospitals' mean is the
    estimate; three times a variance's move can make it negative. At a rate of 1 the
    delta goes through untouched (no multiply): exactly ``apply_delta``'s result.
    """
    rate = check_server_lr(server_lr)
    if rate == 1.0:
        return apply_delta(base, delta, layout, local=local)
    factor = torch.tensor(rate, dtype=torch.float32)
    scaled = {
        key: delta[key] * factor if parameters is None or key in parameters else delta[key]
        for key in layout.keys
    }
    return apply_delta(base, scaled, layout, local=local)
