"""Checking what members send to be relayed: addresses, keys, signatures.

Each refusal is a ServiceError with a sentence the signer can act on.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from eth_keys.exceptions import BadSignature
from eth_utils import is_address, to_checksum_address

from chain import eip712
from portal.core import chain as portal_chain
from portal.core.apis import ServiceError


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


def parse_signature(value: str) -> bytes:
    try:
        sig = bytes.fromhex(value.lower().removeprefix("0x"))
    except (ValueError, AttributeError):
        raise ServiceError("the signature is not hex") from None
    if len(sig) != 65:
        raise ServiceError("the signature must be 65 bytes (r, s, v) written as hex")
    return sig


def recover_signer(typed: dict[str, Any], sig: bytes) -> str:
    """The address that signed `typed`; a malformed (r, s, v) is the signer's to fix."""
    try:
        return eip712.recover_typed(typed, sig)
    except (ValueError, BadSignature):
        raise ServiceError(
            "the signature is not a valid secp256k1 signature (r, s, v): sign the typed data again"
        ) from None


def chain_domain() -> dict[str, Any]:
    """The EIP-712 domain of the registry this portal follows."""
    return {
        "chain_id": portal_chain.client().chain_id,
        "contract": portal_chain.deployment().address,
    }


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
