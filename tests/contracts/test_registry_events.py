"""Events carry their state: the registry's members, proposals, ballots, delegates and nodes
rebuilt from its logs alone equal what its views say (DESIGN.md)."""

from __future__ import annotations

import hashlib
from typing import Any

from registry_helpers import (
    BOT,
    CITY,
    EVE,
    HARBOUR,
    MARY,
    NEWKEY,
    NORTH,
    VOTING_PERIOD,
    advance,
    persona,
    sponsor,
)

from chain.consortium_registry import ConsortiumRegistry, Delegation, ProposalStatus, Scope
from chain.events import EventDecoder

NODE = hashlib.sha256(b"node:events").digest()
STEWARD = persona("events-steward")


class Rebuilt:
    """The registry's state, from its events only (no view call at any block)."""

    def __init__(self) -> None:
        self.members: dict[int, dict[str, Any]] = {}
        self.proposals: dict[int, dict[str, Any]] = {}
        self.ballots: dict[tuple[int, int], bool] = {}
        self.delegates: dict[str, tuple[int, int]] = {}
        self.nodes: dict[bytes, tuple[int, str, bytes, bool]] = {}

    def apply(self, name: str, a: dict[str, Any]) -> None:
        if name == "MemberAdmitted":
            self.members[a["memberId"]] = {
                "governance": a["governance"],
                "role": a["role"],
                "data_key": a["dataKey"],
                "name_hash": a["nameHash"],
                "active": True,
                "joined_epoch": a["joinedEpoch"],
            }
        elif name == "MemberRemoved":
            self.members[a["memberId"]]["active"] = False
        elif name == "GovernanceRotated":
            self.members[a["memberId"]]["governance"] = a["current"]
        elif name == "ProposalOpened":
            self.proposals[a["proposalId"]] = {
                "kind": a["kind"],
                "status": ProposalStatus.OPEN,
                "subject_id": a["subjectId"],
                "account": a["account"],
                "role": a["role"],
                "data_key": a["dataKey"],
                "name_hash": a["nameHash"],
                "sponsor_id": a["sponsorId"],
                "epoch": a["epoch"],
                "deadline": a["deadline"],
                "eligible": a["eligible"],
                "yes": 0,
                "no": 0,
            }
        elif name == "VoteCast":
            self.ballots[(a["proposalId"], a["memberId"])] = a["support"]
            self.proposals[a["proposalId"]].update(yes=a["yes"], no=a["no"])
        elif name == "ProposalDecided":
            status = ProposalStatus.ACCEPTED if a["accepted"] else ProposalStatus.REJECTED
            self.proposals[a["proposalId"]].update(status=status, yes=a["yes"], no=a["no"])
        elif name == "DelegateSet":
            if a["enabled"]:
                self.delegates[a["delegate"]] = (a["memberId"], a["scope"])
            else:
                self.delegates.pop(a["delegate"])
        elif name == "NodeRegistered":
            self.nodes[a["nodeId"]] = (a["memberId"], a["signer"], a["dataKey"], True)
        elif name == "NodeKeyRotated":
            member_id, signer, _, active = self.nodes[a["nodeId"]]
            self.nodes[a["nodeId"]] = (member_id, signer, a["dataKey"], active)
        elif name == "NodeRevoked":
            member_id, signer, data_key, _ = self.nodes[a["nodeId"]]
            self.nodes[a["nodeId"]] = (member_id, signer, data_key, False)
        else:
            raise AssertionError(f"an event this test does not rebuild from: {name}")


def _rebuild(reg: ConsortiumRegistry) -> Rebuilt:
    logs = reg.client.w3.eth.get_logs({"address": reg.address, "fromBlock": 0})
    rebuilt = Rebuilt()
    for event in EventDecoder([reg.abi]).decode_all(logs):
        rebuilt.apply(event.name, event.args)
    return rebuilt


def _history(reg: ConsortiumRegistry) -> None:
    """Every kind of change: admissions, a rotation, a rejected removal, an expired
    proposal, a proposal still open, delegates set and cleared, a node's whole life."""
    harbour = sponsor(reg, HARBOUR)
    reg.vote(harbour, True, sender_key=MARY.key)
    reg.vote(harbour, True, sender_key=CITY.key)
    rotation = reg.propose_rotation(2, NEWKEY.address, sender_key=CITY.key)
    rotation_id = reg.proposal_id_from(reg.decode_events(rotation))
    for voter in (MARY, NORTH, HARBOUR):
        reg.vote(rotation_id, True, sender_key=voter.key)
    removal = reg.proposal_id_from(reg.decode_events(reg.propose_removal(3, sender_key=MARY.key)))
    for voter in (NEWKEY, HARBOUR):  # two of four voting no: the quorum is out of reach
        reg.vote(removal, False, sender_key=voter.key)
    expired = reg.proposal_id_from(reg.decode_events(reg.propose_removal(4, sender_key=MARY.key)))
    reg.vote(expired, True, sender_key=NORTH.key)
    advance(reg.client, VOTING_PERIOD + 1)
    reg.finalize(expired)
    sponsor(reg, EVE, by=NORTH)  # stays open
    reg.set_delegate(BOT.address, Scope.DATA, True, sender_key=MARY.key)
    reg.set_delegate(BOT.address, Scope.NODE, True, sender_key=MARY.key)
    reg.set_delegate(BOT.address, Scope.NODE, False, sender_key=MARY.key)
    reg.set_delegate(STEWARD.address, Scope.DATA, True, sender_key=NORTH.key)
    reg.register_node(NODE, HARBOUR.address, b"\x01" * 32, sender_key=MARY.key)
    reg.rotate_node_key(NODE, b"\x02" * 32, sender_key=MARY.key)
    reg.revoke_node(NODE, sender_key=MARY.key)


def test_it_rebuilds_its_state_from_its_events_alone(reg: ConsortiumRegistry) -> None:
    _history(reg)
    rebuilt = _rebuild(reg)
    assert {i: m | {"id": i} for i, m in rebuilt.members.items()} == {
        m.id: vars(m) for m in reg.members()
    }
    for member_id, m in rebuilt.members.items():
        if m["active"]:
            assert reg.member_id_of(m["governance"]) == member_id
    assert len(rebuilt.proposals) == reg.proposal_count() == 5
    for proposal_id, p in rebuilt.proposals.items():
        assert p | {"id": proposal_id} == vars(reg.proposal(proposal_id))
    for (proposal_id, member_id), support in rebuilt.ballots.items():
        assert reg.ballot_of(proposal_id, member_id) is support
    assert rebuilt.delegates == {STEWARD.address: (3, Scope.DATA)}
    assert reg.delegate_of(STEWARD.address) == Delegation(3, Scope.DATA)
    assert reg.delegate_of(BOT.address) == Delegation(0, Scope.NONE)
    [(node_id, state)] = rebuilt.nodes.items()
    on_chain = reg.node(node_id)
    assert state == (on_chain.member_id, on_chain.signer, on_chain.data_key, on_chain.active)
