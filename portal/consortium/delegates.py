"""Writes for delegates: the role-scoped addresses a member lets act for it
(`DATA` anchors datasets and signs their grants, `NODE` acts for a training
node). The member signs the delegation with its governance key (its wallet, or
in the embedded demo its keystore); the portal relays it and mirrors the event.
"""

from __future__ import annotations

from typing import Any

from portal.consortium.models import Delegate, Member
from portal.consortium.services import member_signature
from portal.core import relay
from portal.core.exceptions import ServiceError
from portal.core.signing import parse_address
from portal.core.sync import mirror_receipt


def delegate_typed_data(
    *, member: Member, address: str, scope: int, enabled: bool
) -> dict[str, Any]:
    message = {
        "delegate": parse_address(address, "delegate address"),
        "scope": int(scope),
        "enabled": enabled,
    }
    return relay.typed_data("SetDelegate", message, signer=member.governance_address)


def delegate_set(
    *, member: Member, address: str, scope: int, enabled: bool = True, signature: str | None = None
) -> Delegate:
    """Register (or disable) `address` as the member's delegate for `scope`, by its signature."""
    if not member.is_active:
        raise ServiceError(f"{member.name} is not an active member")
    if int(scope) not in Delegate.Scope.values:
        raise ServiceError(f"no delegate scope {scope}: use one of {Delegate.Scope.values}")
    address = parse_address(address, "delegate address")
    if Delegate.objects.filter(address=address).exclude(member=member).exists():
        raise ServiceError(f"{address} already acts for another member")
    if not enabled and not member.delegates.filter(address=address, enabled=True).exists():
        raise ServiceError(f"{address} is not one of {member.name}'s delegates")
    typed = delegate_typed_data(member=member, address=address, scope=scope, enabled=enabled)
    sig = member_signature(member, typed, signature)
    receipt = relay.send(typed, sig, signer=member.governance_address)
    mirror_receipt(receipt)
    return Delegate.objects.get(member=member, address=address)
