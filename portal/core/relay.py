"""The portal's one way to relay a signed action declared in ``chain.actions``.

An action's typed data is built here from its declaration: the contract it is signed for
(at the address this portal has recorded), that contract's own ERC-5267 domain, and the
signer's nonce where the type has one (under the key the action declares). A signature is
checked here before anything is sent: the one the request carries, or, in the embedded
demo, one made with the signer's demo keystore; it must be by the expected signer, and it
counts against the member's hourly relay budget. ``send`` then relays exactly what was
signed, to the contract's relayed form named by the declaration. The services decide who
may act and who signs, and mirror the receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from web3.types import TxReceipt

from chain import actions, eip712
from chain.actions import SignedAction, TypedData
from chain.wrapper import ContractWrapper
from portal.core import chain as portal_chain
from portal.core import demokeys
from portal.core.exceptions import ServiceError
from portal.core.signing import parse_signature, recover_signer, relay_budget_spend


class Signatory(Protocol):
    """Whom a relayed transaction is charged to: a member (its name, and its governance
    address, whose demo keystore may sign in the embedded demo)."""

    pk: Any
    name: str
    governance_address: str


SignerCheck = Callable[[Any, Any], Any]
"""``check(viewer, subject)``: who acts for ``viewer`` on ``subject`` (the member, the object
the action is about), or raise ``Forbidden`` saying why not."""

_checks: dict[str, SignerCheck] = {}


def register_checks(checks: dict[str, SignerCheck]) -> None:
    """Each app, when ready, says who may take its signed actions (its selectors decide):
    core imports no app, and a route of an action without a check refuses to run."""
    for name in checks:
        actions.action(name)
    _checks.update(checks)


def acting(name: str, viewer: Any, subject: Any) -> Any:
    """Who acts for ``viewer`` in action ``name`` on ``subject``: the answer of the check
    its app registered for the declared signer's role; ``Forbidden`` if it says no."""
    try:
        check = _checks[name]
    except KeyError:
        raise LookupError(
            f"no app registered who may take {name} ({actions.action(name).signer})"
        ) from None
    return check(viewer, subject)


def contract_of(declared: SignedAction) -> ContractWrapper:
    """The wrapper of the contract ``declared`` is signed for, at its recorded address."""
    if declared.contract == actions.CONSORTIUM_REGISTRY:
        return portal_chain.registry()
    if declared.contract == actions.DATASET_REGISTRY:
        return portal_chain.datasets()
    raise ServiceError(
        f"{declared.name} is signed for {declared.contract}, which this portal does not follow",
        code="unknown_contract",
    )


def typed_data(name: str, message: dict[str, Any], *, signer: str | None = None) -> TypedData:
    """The typed data of action ``name`` over ``message``, ready for a wallet; an action with
    a nonce takes ``signer``'s next one, read from the contract under the key it declares."""
    declared = actions.action(name)
    contract = contract_of(declared)
    if declared.has_nonce:
        if signer is None:
            raise ValueError(f"{name} has a nonce: name its signer")
        message = {**message, "nonce": contract.nonce_for(name, signer, message)}
    return actions.typed_data(contract.client, name, contract.address, message)


def signed(
    typed: TypedData,
    signature: str | None,
    *,
    signer: str,
    member: Signatory,
    what: str | None = None,
) -> bytes:
    """The signature over ``typed`` by ``signer``, charged to ``member``'s relay budget.

    The request's own signature, or, where it sends none and ``signer`` is the member's
    governance address, one made with its demo keystore (where this portal keeps one).
    """
    what = what or f"the {typed['primaryType']}"
    if signature:
        sig = parse_signature(signature)
    else:
        key = demokeys.load(signer) if signer == member.governance_address else None
        if key is None:
            if signer != member.governance_address:
                raise ServiceError(f"the signature of {what} by {signer} is required")
            raise ServiceError(
                "a signature from the member's wallet is required (sign the typed data first)"
            )
        sig = eip712.sign_typed(key, typed)
    recovered = recover_signer(typed, sig)
    if recovered != signer:
        if signer == member.governance_address:
            raise ServiceError(
                f"the signature is by {recovered}, not by {member.name}'s governance address "
                f"{member.governance_address}"
            )
        raise ServiceError(
            f"the signature of {what} is by {recovered}, not by {signer}: sign its typed data again"
        )
    relay_budget_spend(member_id=member.pk, member_name=member.name)
    return sig


def send(
    typed: TypedData, signature: bytes, *, signer: str, unsigned: dict[str, Any] | None = None
) -> TxReceipt:
    """Relay exactly what was signed: the action ``typed`` names, its message as signed,
    to the contract it was signed for (``ContractWrapper.send_signed``); simulated first,
    so a refusal costs no gas. ``unsigned`` holds what the action declares unsigned.

    A refusal raises the contract's decoded error (``ContractError``). The caller mirrors
    the receipt's events.
    """
    declared = actions.action(typed["primaryType"])
    contract = contract_of(declared)
    if typed["domain"].get("verifyingContract") != contract.address:
        raise ServiceError(
            f"the {declared.name} was signed for the contract at "
            f"{typed['domain'].get('verifyingContract')}, not this portal's {contract.address}: "
            "ask for its typed data again",
            code="wrong_contract",
        )
    return contract.send_signed(
        declared.name, typed["message"], signature, signer=signer, unsigned=unsigned
    )
