"""Encrypted key files (Web3 Secret Storage, keystore JSON V3) for CLI users and nodes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr


def new_account() -> LocalAccount:
    """A fresh random secp256k1 account."""
    return Account.create()


def write_keystore(
    path: Path | str,
    private_key: str | bytes,
    password: str,
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> str:
    """Encrypt ``private_key`` into ``path`` (mode 0600); returns the account address."""
    data = Account.encrypt(cast(HexStr, private_key), password, kdf=kdf, iterations=iterations)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    return str(Account.from_key(private_key).address)


def read_keystore(path: Path | str, password: str) -> str:
    """Decrypt a keystore file; returns the private key as 0x-hex (ValueError on a bad password)."""
    data = json.loads(Path(path).read_text())
    return "0x" + bytes(Account.decrypt(data, password)).hex()
