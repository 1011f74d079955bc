"""A hospital node's own keys, kept on the node's machine and nowhere else.

The directory holds the node's secp256k1 signing key (a standard encrypted
Ethereum keystore, via chain.keystore), its X25519 data-encryption private key
(PKCS#8, encrypted with the same password) and `node.json` with the public
half: node id, signing address and data public key. The password comes from
MEDCHAIN_NODE_PASSWORD or the file named by MEDCHAIN_NODE_PASSWORD_FILE.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_utils import keccak, to_bytes, to_checksum_address

from chain import eip712
from chain.keystore import read_keystore, write_keystore

SIGNER_FILE = "signer.json"
DATA_KEY_FILE = "data-key.pem"
PUBLIC_FILE = "node.json"


class KeystoreError(RuntimeError):
    """The node keystore is missing, incomplete or the password is wrong."""


def node_id_for(signer_address: str) -> str:
    """A node's id is derived from its signing address, so the keystore alone names its queue."""
    return "0x" + keccak(b"medchain-node:" + to_bytes(hexstr=signer_address)).hex()


def password_from_env() -> str:
    path = os.environ.get("MEDCHAIN_NODE_PASSWORD_FILE", "")
    if path:
        return Path(path).read_text().strip()
    password = os.environ.get("MEDCHAIN_NODE_PASSWORD", "")
    if not password:
        raise KeystoreError(
            "set MEDCHAIN_NODE_PASSWORD or MEDCHAIN_NODE_PASSWORD_FILE to unlock the node keystore"
        )
    return password


@dataclass(frozen=True)
class NodeIdentity:
    """The public half of a node's keys: what its member registers on chain."""

    node_id: str
    signer_address: str
    data_public_key: str

    @classmethod
    def load(cls, directory: Path) -> NodeIdentity:
        path = Path(directory) / PUBLIC_FILE
        if not path.exists():
            raise KeystoreError(f"no node keystore at {directory} (run `manage.py node_init`)")
        data = json.loads(path.read_text())
        return cls(data["node_id"], data["signer_address"], data["data_public_key"])


class NodeKeystore:
    """Unlocked keys of one node; only ever constructed on the node's own machine."""

    def __init__(self, directory: Path, *, signer_key: str, data_key: X25519PrivateKey) -> None:
        self.directory = Path(directory)
        self._signer_key = signer_key
        self._data_key = data_key
        self.identity = NodeIdentity.load(self.directory)
        if Account.from_key(signer_key).address != self.identity.signer_address:
            raise KeystoreError(f"{self.directory}: node.json does not match the signing key")

    @classmethod
    def create(cls, directory: Path, password: str) -> NodeKeystore:
        directory = Path(directory)
        if (directory / SIGNER_FILE).exists():
            raise KeystoreError(f"{directory} already holds a node keystore; not replacing it")
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        signer_key = "0x" + secrets.token_bytes(32).hex()
        address = to_checksum_address(Account.from_key(signer_key).address)
        write_keystore(directory / SIGNER_FILE, signer_key, password)
        data_key = X25519PrivateKey.generate()
        pem = data_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
        (directory / DATA_KEY_FILE).write_bytes(pem)
        os.chmod(directory / DATA_KEY_FILE, 0o600)
        public = data_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        identity = {
            "node_id": node_id_for(address),
            "signer_address": address,
            "data_public_key": "0x" + public.hex(),
        }
        (directory / PUBLIC_FILE).write_text(json.dumps(identity, indent=2) + "\n")
        return cls(directory, signer_key=signer_key, data_key=data_key)

    @classmethod
    def open(cls, directory: Path, password: str) -> NodeKeystore:
        directory = Path(directory)
        try:
            signer_key = read_keystore(directory / SIGNER_FILE, password)
            loaded = serialization.load_pem_private_key(
                (directory / DATA_KEY_FILE).read_bytes(), password=password.encode()
            )
        except FileNotFoundError as exc:
            raise KeystoreError(f"incomplete node keystore at {directory}: {exc}") from None
        except ValueError as exc:
            raise KeystoreError(f"cannot unlock the node keystore at {directory}: {exc}") from None
        if not isinstance(loaded, X25519PrivateKey):
            raise KeystoreError(f"{directory / DATA_KEY_FILE} is not an X25519 key")
        return cls(directory, signer_key=signer_key, data_key=loaded)

    @property
    def data_private_key(self) -> X25519PrivateKey:
        return self._data_key

    def sign_check_in(self, *, chain_id: int, registry: str, challenge: str) -> str:
        """Sign the EIP-712 NodeCheckIn that the portal checks against the on-chain signer."""
        typed = eip712.typed_for(
            "NodeCheckIn",
            chain_id=chain_id,
            contract=registry,
            node_id=self.identity.node_id,
            challenge=challenge,
        )
        return "0x" + eip712.sign_typed(self._signer_key, typed).hex()
