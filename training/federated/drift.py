"""Drift control: SCAFFOLD's control variates, read off the updates a round already has.

Non-IID hospitals drift apart within a round: each follows its own data for S local
steps, and the average of their moves is not a point any of them trained towards.
SCAFFOLD (Karimireddy et al., 2020) steers every local step by ``c - c_i``: ``c_i`` is
the hospital's own control variate, ``c`` the consortium's. We take SCAFFOLD's option II
variate, the round's mean step direction per unit of learning rate,

    c_i = -(its update) / (S * lr)        c = -(the round's aggregate) / (S * lr)

with S the local steps and lr the round's local rate; ``c`` uses the rule's aggregate
before the server rate scales it. With plain SGD this is exactly SCAFFOLD's
``(x - y_i) / (K * lr)``. With AdamW it is the mean of the optimizer's own steps, so the
correction is applied where the optimizer moves the weights: after each
``optimizer.step()``, ``param -= lr * (c - c_i)`` (``engine.train(drift_correction=...)``).
Corrections are then in the optimizer's units (AdamW's steps are about one rate long on
each coordinate), which kept them bounded where a correction of the raw gradients before
AdamW (a variant measured in docs/federated.md) let stale gradients swamp a round.

Nothing new travels: ``c`` follows from the aggregate every participant recomputes bit for
bit, ``c_i`` from the hospital's own update, which it keeps. So drift control needs no
change to the update file or to what a node signs, and it works under every rule (with
DP-FedAvg, ``c`` is derived from the noised aggregate: post-processing, no privacy cost).
A hospital in its first round, or after missing one, has no ``c_i`` of its own and takes
``c_i = 0`` (SCAFFOLD's initialisation); round 1 has no ``c`` and no correction.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import torch


class DriftError(ValueError):
    """Drift control that cannot run as asked; the message says why."""


def direction(
    delta: Mapping[str, torch.Tensor], parameters: Collection[str], *, steps: int, lr: float
) -> dict[str, torch.Tensor]:
    """The mean step per unit of rate, ``-delta / (steps * lr)``, of ``parameters`` (float32):
    a hospital's own variate from its update, the consortium's from the aggregate."""
    if steps < 1 or not (math.isfinite(lr) and lr > 0):
        raise DriftError(f"drift control needs steps >= 1 and a positive rate, not {steps}, {lr}")
    missing = sorted(set(parameters) - set(delta))
    if missing:
        raise DriftError(f"the update has no entry for parameter {missing[0]}")
    scale = -1.0 / (steps * lr)  # float32 values times a Python float: float32 arithmetic
    return {name: delta[name].to(torch.float32) * scale for name in sorted(parameters)}


def correction(
    consortium: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """``c - c_i`` by parameter name; a hospital without a variate of its own uses zero."""
    if own is None:
        return {name: value.clone() for name, value in consortium.items()}
    differ = sorted(set(consortium) ^ set(own))
    if differ:
        raise DriftError(f"the hospital's variate and the consortium's differ in {differ[0]}")
    return {name: consortium[name] - own[name] for name in consortium}
