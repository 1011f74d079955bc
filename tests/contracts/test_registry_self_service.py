"""Delegates and training nodes, sent directly or relayed with the member's signature."""

from __future__ import annotations

from eth_utils import keccak
from registry_helpers import BOT, CITY, EVE, HARBOUR, LAB, MARY, admit, reverts, sign

from chain.consortium_registry import ConsortiumRegistry, Delegation, Scope

NODE = keccak(text="node-1")
KEY1, KEY2 = keccak(text="x25519-1"), keccak(text="x25519-2")
ZERO = "0x" + "00" * 20


def test_it_sets_and_clears_a_delegate(reg: ConsortiumRegistry) -> None:
    receipt = reg.set_delegate(BOT.address, Scope.DATA, True, sender_key=MARY.key)
    assert [(e.name, e.args) for e in reg.decode_events(receipt)] == [
        ("DelegateSet", {"memberId": 1, "delegate": BOT.address, "scope": 1, "enabled": True})
    ]
    assert reg.delegate_of(BOT.address) == Delegation(1, Scope.DATA)
    member_id, scope = reg.delegate_of(BOT.address)
    assert (member_id, scope) == (1, Scope.DATA)
    reg.set_delegate(BOT.address, Scope.NODE, True, sender_key=MARY.key)  # change its scope
    assert reg.delegate_of(BOT.address) == Delegation(1, Scope.NODE)
    with reverts("ConsortiumRegistryUnknownDelegate", delegate=BOT.address, memberId=1):
        reg.set_delegate(BOT.address, Scope.DATA, False, sender_key=MARY.key)
    reg.set_delegate(BOT.address, Scope.NODE, False, sender_key=MARY.key)
    assert reg.delegate_of(BOT.address) == Delegation(0, Scope.NONE)


def test_it_binds_a_delegate_to_one_member(reg: ConsortiumRegistry) -> None:
    reg.set_delegate(BOT.address, Scope.DATA, True, sender_key=MARY.key)
    with reverts("ConsortiumRegistryDelegateTaken", delegate=BOT.address, memberId=1):
        reg.set_delegate(BOT.address, Scope.DATA, True, sender_key=CITY.key)
    with reverts("ConsortiumRegistryUnknownDelegate", delegate=BOT.address, memberId=2):
        reg.set_delegate(BOT.address, Scope.DATA, False, sender_key=CITY.key)
    with reverts(
        "ConsortiumRegistryAddressInUse", account=BOT.address
    ):  # a delegate cannot become a member
        admit(reg, BOT)


def test_it_refuses_bad_delegates(reg: ConsortiumRegistry) -> None:
    with reverts("ConsortiumRegistryInvalidScope", scope=0):
        reg.set_delegate(BOT.address, 0, True, sender_key=MARY.key)
    with reverts("ConsortiumRegistryInvalidScope", scope=3):
        reg.set_delegate(BOT.address, 3, True, sender_key=MARY.key)
    with reverts("ConsortiumRegistryAddressInUse", account=CITY.address):
        reg.set_delegate(CITY.address, 1, True, sender_key=MARY.key)
    with reverts("ConsortiumRegistryInvalidAddress", account=ZERO):
        reg.set_delegate(ZERO, 1, True, sender_key=MARY.key)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.set_delegate(BOT.address, 1, True, sender_key=EVE.key)


def test_it_sets_a_delegate_by_signature(reg: ConsortiumRegistry) -> None:
    typed = reg.set_delegate_typed(LAB.address, BOT.address, Scope.NODE, True)
    signature = sign(LAB, typed)
    with reverts("MemberSignedInvalidSignature", expected=LAB.address, recovered=EVE.address):
        reg.send_signed(
            "SetDelegate",
            {"delegate": BOT.address, "scope": Scope.NODE, "enabled": True},
            sign(EVE, typed),
            signer=LAB.address,
        )
    reg.send_signed(
        "SetDelegate",
        {"delegate": BOT.address, "scope": Scope.NODE, "enabled": True},
        signature,
        signer=LAB.address,
    )
    assert reg.delegate_of(BOT.address) == Delegation(4, Scope.NODE)
    assert reg.nonce(LAB.address) == 1
    with reverts(
        "MemberSignedInvalidSignature", expected=LAB.address, recovered=_replay(reg, typed, LAB)
    ):
        reg.send_signed(
            "SetDelegate",
            {"delegate": BOT.address, "scope": Scope.NODE, "enabled": True},
            signature,
            signer=LAB.address,
        )


def _replay(reg: ConsortiumRegistry, typed, who) -> str:
    """Whom a signature over ``typed`` recovers to once the signer's nonce moved on."""
    from chain import eip712

    moved = {**typed, "message": {**typed["message"], "nonce": reg.nonce(who.address)}}
    return eip712.recover_typed(moved, sign(who, typed))


def test_it_registers_rotates_and_revokes_a_node(reg: ConsortiumRegistry) -> None:
    receipt = reg.register_node(NODE, BOT.address, KEY1, sender_key=MARY.key)
    assert [(e.name, e.args) for e in reg.decode_events(receipt)] == [
        (
            "NodeRegistered",
            {"memberId": 1, "nodeId": NODE, "signer": BOT.address, "dataKey": KEY1},
        )
    ]
    node = reg.node(NODE)
    assert (node.member_id, node.signer, node.data_key, node.active) == (1, BOT.address, KEY1, True)
    receipt = reg.rotate_node_key(NODE, KEY2, sender_key=MARY.key)
    assert reg.decode_events(receipt)[0].args == {"memberId": 1, "nodeId": NODE, "dataKey": KEY2}
    assert reg.node(NODE).data_key == KEY2
    with reverts("ConsortiumRegistryUnknownNode", nodeId=NODE, memberId=2):
        reg.revoke_node(NODE, sender_key=CITY.key)
    receipt = reg.revoke_node(NODE, sender_key=MARY.key)
    assert [(e.name, e.args) for e in reg.decode_events(receipt)] == [
        ("NodeRevoked", {"memberId": 1, "nodeId": NODE})
    ]
    assert not reg.node(NODE).active
    with reverts("ConsortiumRegistryUnknownNode", nodeId=NODE, memberId=1):
        reg.rotate_node_key(NODE, KEY1, sender_key=MARY.key)
    with reverts("ConsortiumRegistryNodeExists", nodeId=NODE):  # node ids are never reused
        reg.register_node(NODE, BOT.address, KEY1, sender_key=CITY.key)


def test_it_refuses_bad_nodes(reg: ConsortiumRegistry) -> None:
    with reverts("ConsortiumRegistryInvalidNode", nodeId=b"\x00" * 32):
        reg.register_node(b"\x00" * 32, BOT.address, KEY1, sender_key=MARY.key)
    with reverts("ConsortiumRegistryInvalidAddress", account=ZERO):
        reg.register_node(NODE, ZERO, KEY1, sender_key=MARY.key)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.register_node(NODE, BOT.address, KEY1, sender_key=EVE.key)
    with reverts("ConsortiumRegistryUnknownNode", nodeId=NODE, memberId=1):
        reg.revoke_node(NODE, sender_key=MARY.key)


def test_it_manages_nodes_by_signature(reg: ConsortiumRegistry) -> None:
    member = admit(reg, HARBOUR)
    typed = reg.register_node_typed(HARBOUR.address, NODE, BOT.address, KEY1)
    with reverts("MemberSignedInvalidSignature", expected=HARBOUR.address, recovered=EVE.address):
        reg.send_signed(
            "RegisterNode",
            {"nodeId": NODE, "signer": BOT.address, "dataKey": KEY1},
            sign(EVE, typed),
            signer=HARBOUR.address,
        )
    reg.send_signed(
        "RegisterNode",
        {"nodeId": NODE, "signer": BOT.address, "dataKey": KEY1},
        sign(HARBOUR, typed),
        signer=HARBOUR.address,
    )
    assert reg.node(NODE).member_id == member
    typed = reg.rotate_node_key_typed(HARBOUR.address, NODE, KEY2)
    signature = sign(HARBOUR, typed)
    reg.send_signed(
        "RotateNodeKey", {"nodeId": NODE, "dataKey": KEY2}, signature, signer=HARBOUR.address
    )
    assert reg.node(NODE).data_key == KEY2
    with reverts(
        "MemberSignedInvalidSignature",
        expected=HARBOUR.address,
        recovered=_replay(reg, typed, HARBOUR),
    ):
        reg.send_signed(
            "RotateNodeKey", {"nodeId": NODE, "dataKey": KEY2}, signature, signer=HARBOUR.address
        )
    typed = reg.revoke_node_typed(HARBOUR.address, NODE)
    receipt = reg.send_signed(
        "RevokeNode", {"nodeId": NODE}, sign(HARBOUR, typed), signer=HARBOUR.address
    )
    assert reg.decode_events(receipt)[0].name == "NodeRevoked"
    assert not reg.node(NODE).active
    assert reg.nonce(HARBOUR.address) == 4  # application + three actions


def test_it_refuses_self_service_from_removed_members(reg: ConsortiumRegistry) -> None:
    removal = reg.proposal_id_from(reg.decode_events(reg.propose_removal(4, sender_key=MARY.key)))
    reg.vote(removal, True, sender_key=MARY.key)
    reg.vote(removal, True, sender_key=CITY.key)
    typed = reg.register_node_typed(LAB.address, NODE, BOT.address, KEY1)
    with reverts("ConsortiumRegistryNotMember", account=LAB.address):
        reg.send_signed(
            "RegisterNode",
            {"nodeId": NODE, "signer": BOT.address, "dataKey": KEY1},
            sign(LAB, typed),
            signer=LAB.address,
        )
