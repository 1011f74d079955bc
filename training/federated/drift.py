"""Drift control: SCAFFOLD's control variates, carried inside the update file.

Non-IID hospitals drift apart within a round: each follows its own data's gradient for
S local steps, and the average of their moves is not a point any of them trained
towards. SCAFFOLD (Karimireddy et al., 2020) corrects every local gradient by
``c - c_i``: ``c_i`` is the hospital's own control variate (the mean gradient it saw
last round), ``c`` the server's (the mean of the hospitals'). The correction is added in
gradient space, before clipping and AdamW (``engine.train(drift_correction=...)``):
SCAFFOLD's option II variate ``(x - y_i) / (K * lr)`` assumes plain SGD, and AdamW's
per-coordinate scaling would make it meaningless; the mean raw gradient is option I's
quantity, taken over the round's own steps instead of a second pass.

How it travels, without a second file or a second signature: the variates are entries
of the round's *state*, beside the model's, under ``drift:<parameter name>``
(``with_variates``). The base state of round 1 holds zeros; a hospital's local state
holds its new variate (``train``'s ``mean_gradient``), so its update (``local - base``,
the same canonical file, hash and checks) carries ``c_i - c`` next to its model delta,
covered by the update hash the node signs. The rule aggregates every entry alike, so the
aggregate's variate entries are the (weighted) mean of ``c_i - c`` and ``apply_delta``
gives the next round's ``c``; the server rate scales model parameters only, never a
variate (``server_step(parameters=...)``). Every participant recomputes ``c`` bit for
bit with the aggregate.

Rules: drift control runs with the coordinate-wise rules (``fedavg``, ``median``,
``trimmed_mean``). Krum and update-norm clipping would measure distances and norms over
gradients and parameter moves at once, two quantities in different units, and
DP-FedAvg's noise is sized for model deltas while a variate is a mean gradient that
would leave unprotected: all three are refused (``check_rule``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

PREFIX = "drift:"
RULES = ("fedavg", "median", "trimmed_mean")
StateDict = Mapping[str, torch.Tensor]


class DriftError(ValueError):
    """Drift control that cannot run as asked; the message says why."""


def variate_key(parameter: str) -> str:
    return PREFIX + parameter


def is_variate(key: str) -> bool:
    return key.startswith(PREFIX)


def check_rule(rule: str, options: Mapping[str, object]) -> None:
    """Refuse a rule (or clipping) that cannot carry variates, with the reason."""
    if rule not in RULES:
        raise DriftError(
            f"drift control runs with {', '.join(RULES)}, not {rule}: its variates are "
            "mean gradients, which Krum's distances and DP-FedAvg's noise are not sized for"
        )
    if options.get("clip_norm") is not None:
        raise DriftError(
            "drift control cannot run with update-norm clipping: the norm would mix "
            "gradients (the variates) and parameter moves"
        )


def with_variates(
    state: StateDict,
    parameters: Collection[str],
    variates: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """``state`` with a variate entry for every name in ``parameters``: ``variates``' value
    where given, zeros shaped like the parameter otherwise (a round 1 base, a hospital that
    has not trained yet)."""
    clash = sorted(k for k in state if is_variate(k))
    if clash:
        raise DriftError(f"the model has an entry named like a variate: {clash[0]}")
    given = variates or {}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise DriftError(f"a variate names no federated parameter: {unknown[0]}")
    joined = dict(state)
    for name in sorted(parameters):
        value = given.get(name)
        if value is None:
            value = torch.zeros_like(state[name], dtype=torch.float32)
        elif value.shape != state[name].shape:
            raise DriftError(f"the variate of {name} has shape {tuple(value.shape)}")
        joined[variate_key(name)] = value.detach().to("cpu", torch.float32)
    return joined


def split(state: StateDict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the model's entries, the variates by parameter name) of a state with variates."""
    model = {k: v for k, v in state.items() if not is_variate(k)}
    variates = {k[len(PREFIX) :]: v for k, v in state.items() if is_variate(k)}
    return model, variates


def correction(
    server: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """``c - c_i`` by parameter name; a hospital without a variate of its own yet uses
    zero (SCAFFOLD's initialisation), so in round 1 the correction is zero everywhere."""
    if own is None:
        return {name: value.clone() for name, value in server.items()}
    missing = sorted(set(server) ^ set(own))
    if missing:
        raise DriftError(f"the hospital's variates and the server's differ in {missing[0]}")
    return {name: server[name] - own[name] for name in server}
