"""The embedded demo's keystores: members' governance keys (and the demo
steward's Data delegate key) kept by the portal under var/demo-keystores/, so
that visitors can sign without a wallet. Production refuses them (settings).

One place for their password, their path and reading and writing them: the
portal's services sign with them, the demo writes them and hands one to the
steward's upload CLI.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from chain.keystore import read_keystore, write_keystore

PASSWORD = "medchain-demo"


def path(address: str) -> Path:
    return Path(settings.DEMO_KEYSTORE_DIR) / f"{address.lower()}.json"


def exists(address: str) -> bool:
    return bool(settings.DEMO_KEYSTORES) and path(address).exists()


def load(address: str) -> str | None:
    """The private key kept for `address`, or None where demo keystores are off or it has none."""
    return read_keystore(path(address), PASSWORD) if exists(address) else None


def save(address: str, private_key: str) -> Path:
    target = path(address)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Demo keys guard nothing of value (production refuses them); a light KDF keeps clicks fast.
    write_keystore(target, private_key, PASSWORD, kdf="pbkdf2", iterations=1024)
    return target
