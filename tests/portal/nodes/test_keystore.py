from __future__ import annotations

import pytest
from eth_account import Account

from chain import eip712
from portal.nodes.agent.keystore import KeystoreError, NodeIdentity, NodeKeystore, node_id_for


def test_it_round_trips_both_keys(tmp_path):
    created = NodeKeystore.create(tmp_path / "n", "pw")
    opened = NodeKeystore.open(tmp_path / "n", "pw")
    assert opened.identity == created.identity == NodeIdentity.load(tmp_path / "n")
    assert opened.identity.node_id == node_id_for(opened.identity.signer_address)
    public = opened.data_private_key.public_key().public_bytes_raw()
    assert "0x" + public.hex() == created.identity.data_public_key


def test_it_signs_check_ins_with_the_node_address(tmp_path):
    keys = NodeKeystore.create(tmp_path / "n", "pw")
    registry = Account.create().address
    signature = keys.sign_check_in(chain_id=31337, registry=registry, challenge="0x" + "ab" * 32)
    typed = eip712.typed_for(
        "NodeCheckIn",
        chain_id=31337,
        contract=registry,
        node_id=keys.identity.node_id,
        challenge="0x" + "ab" * 32,
    )
    assert eip712.recover_typed(typed, bytes.fromhex(signature[2:])) == keys.identity.signer_address


def test_it_refuses_a_wrong_password_and_an_existing_keystore(tmp_path):
    NodeKeystore.create(tmp_path / "n", "pw")
    with pytest.raises(KeystoreError):
        NodeKeystore.open(tmp_path / "n", "wrong")
    with pytest.raises(KeystoreError, match="already holds"):
        NodeKeystore.create(tmp_path / "n", "pw")
