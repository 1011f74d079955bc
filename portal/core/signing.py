"""Checking what members send to be relayed: addresses, keys, signatures.

Each refusal is a ServiceError with a sentence the signer can act on.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from eth_keys.exceptions import BadSignature
from eth_utils import is_address, to_checksum_address

from chain import eip712
from portal.core.exceptions import ServiceError, Throttled
from portal.core.ratelimit import window_hit


def parse_address(value: str, what: str = "address") -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ServiceError(
            f"the {what} {value!r} is not an Ethereum address (0x followed by 40 hex digits)"
        )
    return str(to_checksum_address(value))


def parse_bytes32(value: str, what: str) -> str:
    raw = value.lower().removeprefix("0x") if isinstance(value, str) else ""
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ServiceError(f"the {what} must be 32 bytes written as 0x followed by 64 hex digits")
    return "0x" + raw


# secp256k1's group order; a signature with s above half of it is the malleable twin of one below.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class RelayRateLimited(Throttled):
    """A member relayed more than RELAY_PER_HOUR transactions."""


def parse_signature(value: str) -> bytes:
    """65 bytes (r, s, v) in the canonical form the contracts accept (OpenZeppelin's ECDSA):
    a high-s or v-other-than-27/28 twin would pass ecrecover here and revert on chain, so
    relaying it would only spend the relayer's gas."""
    try:
        sig = bytes.fromhex(value.lower().removeprefix("0x"))
    except (ValueError, AttributeError):
        raise ServiceError("the signature is not hex") from None
    if len(sig) != 65:
        raise ServiceError("the signature must be 65 bytes (r, s, v) written as hex")
    if sig[64] not in (27, 28):
        raise ServiceError(f"the signature's v is {sig[64]}, not 27 or 28: sign it again")
    if int.from_bytes(sig[32:64], "big") > SECP256K1_N // 2:
        raise ServiceError(
            "the signature is not in canonical form (its s is in the upper half of the curve "
            "order): sign it again with a standard wallet"
        )
    return sig


def relay_budget_spend(*, member_id: int, member_name: str) -> None:
    """Count one relayed transaction for a member; refuse past RELAY_PER_HOUR in this hour.

    The relayer pays the gas of what members sign; the limit keeps one member from
    spending it for everyone. Counters live in the shared cache (a fixed hourly window).
    """
    limit = int(settings.RELAY_PER_HOUR)
    spent = window_hit(f"relay:{member_id}", seconds=3600)
    if spent > limit:
        minutes = 60 - int(time.time() % 3600 // 60)
        raise RelayRateLimited(
            f"{member_name} has had {limit} transactions relayed this hour, the most this "
            f"portal relays for one member: try again in {minutes} minutes",
            code="relay_rate_limited",
        )


def recover_signer(typed: dict[str, Any], sig: bytes) -> str:
    """The address that signed `typed`; a malformed (r, s, v) is the signer's to fix."""
    try:
        return eip712.recover_typed(typed, sig)
    except (ValueError, BadSignature):
        raise ServiceError(
            "the signature is not a valid secp256k1 signature (r, s, v): sign the typed data again"
        ) from None


def signature_or_demo(*, signature: str | None, demo_keystore: bool) -> str | None:
    """What a request signs with: its own signature, or None (the embedded demo keystore)
    only where it asked for that explicitly on a portal that has demo keystores.

    A request that sends neither is refused, so an empty body never signs for a member.
    """
    if signature:
        return signature
    if not demo_keystore:
        hint = (
            "; on this demo portal you may instead ask for its demo keystore explicitly "
            "(demo_keystore: true)"
            if settings.DEMO_KEYSTORES
            else ""
        )
        raise ServiceError(
            "a signature is required: sign the typed data from the matching typed-data route "
            f"with the member's wallet and send it{hint}",
            code="signature_required",
        )
    if not settings.DEMO_KEYSTORES:
        raise ServiceError(
            "demo keystores are disabled on this portal: sign with the member's wallet",
            code="demo_keystores_disabled",
        )
    return None
