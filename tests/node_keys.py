"""Node keystores for tests, each made once per test session.

``NodeKeystore.create`` encrypts the node's signing key with scrypt, which costs about a
second here, as a real node's keystore should. A test gets a copy of the files made the
first time its template was asked for, with the keys already unlocked; tests of the
keystore itself call ``NodeKeystore.create`` and ``open``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from portal.nodes.agent.keystore import NodeKeystore

_made: dict[tuple[str, str], NodeKeystore] = {}


def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="medchain-test-node-keys-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


_ROOT = _root()


def node_keystore(directory: Path, password: str, *, template: str = "node") -> NodeKeystore:
    """A node keystore in ``directory``: the same keys for every test that names ``template``
    (each test deploys its own registry, so the node is new there)."""
    made = _made.get((template, password))
    if made is None:
        made = NodeKeystore.create(_ROOT / f"{template}-{len(_made)}", password)
        _made[(template, password)] = made
    shutil.copytree(made.directory, directory)
    return NodeKeystore(
        directory,
        signer_key=made._signer_key,  # unlocked once, as NodeKeystore.open would
        data_key=made.data_private_key,
    )
