"""A hospital's UID secret: one per member, derived from its governance key.

De-identification replaces every DICOM UID by an HMAC of it under this secret, so the
same secret must be used by every uploader of a member (the CLI and the browser, each of
its stewards, every dataset and version), or one patient's studies would no longer link.

The secret is SHA-256 of the governance key's EIP-712 signature of ``UID_SECRET_TYPED``,
which names the member's governance address and nothing that changes (no chain id, no
contract, no nonce). ECDSA signatures in Ethereum are deterministic (RFC 6979, and low-s
by EIP-2): eth-account and wallets' eth_signTypedData_v4 give the same 65 bytes for the
same key and message, so anyone holding the governance key derives the same secret and
nobody else can. A Data delegate key cannot: the member's admin derives it once and hands
the file to the stewards (docs/ingest.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

PURPOSE = (
    "Derive my hospital's secret for replacing DICOM UIDs in MedChain datasets. "
    "This signature moves nothing and is not sent anywhere."
)


def typed_data(governance_address: str) -> dict[str, Any]:
    """The typed data the governance key signs (a wallet shows it as written here)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
            ],
            "UidSecret": [
                {"name": "member", "type": "address"},
                {"name": "purpose", "type": "string"},
            ],
        },
        "primaryType": "UidSecret",
        "domain": {"name": "MedChain UID secret", "version": "1"},
        "message": {"member": to_checksum_address(governance_address), "purpose": PURPOSE},
    }


def from_signature(signature: bytes | str) -> bytes:
    """The 32-byte secret from the 65-byte signature (r, s, v with v as 27 or 28)."""
    sig = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    if len(sig) != 65:
        raise ValueError(f"a signature is 65 bytes, not {len(sig)}")
    v = sig[64] + 27 if sig[64] < 27 else sig[64]  # some wallets answer v as 0 or 1
    return hashlib.sha256(sig[:64] + bytes([v])).digest()


def derive(private_key: str | bytes) -> bytes:
    """The member's secret, from its governance key."""
    address = Account.from_key(private_key).address
    signed = Account.sign_message(encode_typed_data(full_message=typed_data(address)), private_key)
    return from_signature(bytes(signed.signature))
