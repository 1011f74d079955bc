"""Typed wrapper over the ConsortiumRegistry contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from eth_utils import to_checksum_address
from web3.types import TxReceipt

from chain.actions import TypedData
from chain.client import ChainClient
from chain.events import ChainEvent
from chain.wrapper import ContractWrapper, as_bytes32, as_signature

ZERO_ADDRESS = "0x" + "00" * 20


class Role(IntEnum):
    NONE = 0
    HOSPITAL = 1
    DIAGNOSTIC_SERVER = 2


class Scope(IntEnum):
    NONE = 0
    DATA = 1
    NODE = 2


class ProposalKind(IntEnum):
    ADMISSION = 0
    REMOVAL = 1
    ROTATION = 2


class ProposalStatus(IntEnum):
    """QuorumVote's VoteState: stored as NONE to REJECTED; EXPIRED is only derived by
    ``state`` (open, past its deadline, not yet finalized)."""

    NONE = 0
    OPEN = 1
    ACCEPTED = 2
    REJECTED = 3
    EXPIRED = 4


@dataclass(frozen=True)
class Founder:
    governance: str
    role: int  # a Role
    data_key: bytes | str  # 32 bytes, or 0x-hex
    name_hash: bytes | str


@dataclass(frozen=True)
class Member:
    id: int
    governance: str
    role: Role
    data_key: bytes
    name_hash: bytes
    active: bool
    joined_epoch: int


@dataclass(frozen=True)
class Proposal:
    id: int
    kind: ProposalKind
    status: ProposalStatus
    subject_id: int
    account: str  # applicant, subject's governance (removal) or new governance (rotation)
    role: Role
    data_key: bytes
    name_hash: bytes
    sponsor_id: int
    epoch: int
    deadline: int
    eligible: int
    yes: int
    no: int


@dataclass(frozen=True)
class Node:
    id: bytes
    member_id: int
    signer: str
    data_key: bytes
    active: bool


class Delegation(NamedTuple):
    member_id: int  # 0: not a delegate
    scope: Scope


class ConsortiumRegistry(ContractWrapper):
    """Views return dataclasses; actions send a transaction and return its receipt.

    Actions take ``sender_key``: None sends from the client's relayer.
    """

    NAME = "ConsortiumRegistry"

    @classmethod
    def deploy(
        cls,
        client: ChainClient,
        *,
        founders: Sequence[Founder],
        quorum_bps: int,
        voting_period: int,
        sender_key: str | None = None,
    ) -> ConsortiumRegistry:
        address = client.deploy(
            cls.NAME,
            [to_checksum_address(f.governance) for f in founders],
            [int(f.role) for f in founders],
            [as_bytes32(f.data_key) for f in founders],
            [as_bytes32(f.name_hash) for f in founders],
            quorum_bps,
            voting_period,
            sender_key=sender_key,
        )
        return cls(client, address)

    # views

    def quorum_bps(self) -> int:
        return int(self._call("quorumBps"))

    def voting_period(self) -> int:
        return int(self._call("votingPeriod"))

    def member_count(self) -> int:
        return int(self._call("memberCount"))

    def hospital_count(self) -> int:
        return int(self._call("hospitalCount"))

    def proposal_count(self) -> int:
        return int(self._call("proposalCount"))

    def member_id_of(self, governance: str) -> int:
        return int(self._call("memberIdOf", to_checksum_address(governance)))

    def member(self, member_id: int) -> Member:
        gov, role, data_key, name_hash, active, epoch = self._call("member", member_id)
        return Member(member_id, gov, Role(role), bytes(data_key), bytes(name_hash), active, epoch)

    def members(self) -> list[Member]:
        return [self.member(i) for i in range(1, self.member_count() + 1)]

    def proposal(self, proposal_id: int) -> Proposal:
        v = self._call("proposal", proposal_id)
        return Proposal(
            id=proposal_id,
            kind=ProposalKind(v[0]),
            status=ProposalStatus(v[1]),
            subject_id=v[2],
            account=v[3],
            role=Role(v[4]),
            data_key=bytes(v[5]),
            name_hash=bytes(v[6]),
            sponsor_id=v[7],
            epoch=v[8],
            deadline=v[9],
            eligible=v[10],
            yes=v[11],
            no=v[12],
        )

    def state(self, proposal_id: int) -> ProposalStatus:
        """Where a proposal stands now: EXPIRED once open past its deadline."""
        return ProposalStatus(self._call("state", proposal_id))

    def ballot_of(self, proposal_id: int, member_id: int) -> bool | None:
        """True (yes), False (no) or None (not voted)."""
        ballot = int(self._call("ballotOf", proposal_id, member_id))
        return None if ballot == 0 else ballot == 1

    def delegate_of(self, delegate: str) -> Delegation:
        member_id, scope = self._call("delegateOf", to_checksum_address(delegate))
        return Delegation(int(member_id), Scope(scope))

    def node(self, node_id: bytes | str) -> Node:
        member_id, signer, data_key, active = self._call("node", as_bytes32(node_id))
        return Node(as_bytes32(node_id), member_id, signer, bytes(data_key), active)

    # typed data to sign (domain and the signer's current nonce read from the chain)

    def application_typed(
        self, applicant: str, role: int, data_key: bytes | str, name_hash: bytes | str
    ) -> TypedData:
        msg = {"applicant": applicant, "role": role, "dataKey": data_key, "nameHash": name_hash}
        return self.typed("Application", applicant, msg)

    def sponsor_typed(
        self, sponsor: str, applicant: str, role: int, data_key: bytes | str, name_hash: bytes | str
    ) -> TypedData:
        msg = {"applicant": applicant, "role": role, "dataKey": data_key, "nameHash": name_hash}
        return self.typed("SponsorAdmission", sponsor, msg)

    def vote_typed(self, proposal_id: int, support: bool, voter: str) -> TypedData:
        msg = {"proposalId": proposal_id, "support": support, "voter": voter}
        return self.typed("Vote", voter, msg)

    def propose_removal_typed(self, proposer: str, member_id: int) -> TypedData:
        return self.typed("ProposeRemoval", proposer, {"memberId": member_id})

    def propose_rotation_typed(
        self, proposer: str, member_id: int, new_governance: str
    ) -> TypedData:
        msg = {"memberId": member_id, "newGovernance": new_governance}
        return self.typed("ProposeRotation", proposer, msg)

    def set_delegate_typed(
        self, member: str, delegate: str, scope: int, enabled: bool
    ) -> TypedData:
        msg = {"delegate": delegate, "scope": scope, "enabled": enabled}
        return self.typed("SetDelegate", member, msg)

    def register_node_typed(
        self, member: str, node_id: bytes | str, signer: str, data_key: bytes | str
    ) -> TypedData:
        msg = {"nodeId": node_id, "signer": signer, "dataKey": data_key}
        return self.typed("RegisterNode", member, msg)

    def revoke_node_typed(self, member: str, node_id: bytes | str) -> TypedData:
        return self.typed("RevokeNode", member, {"nodeId": node_id})

    def rotate_node_key_typed(
        self, member: str, node_id: bytes | str, data_key: bytes | str
    ) -> TypedData:
        return self.typed("RotateNodeKey", member, {"nodeId": node_id, "dataKey": data_key})

    # actions

    def sponsor_admission(
        self,
        applicant: str,
        role: int,
        data_key: bytes | str,
        name_hash: bytes | str,
        applicant_signature: bytes | str,
        *,
        sender_key: str | None = None,
    ) -> TxReceipt:
        """Sent by the sponsoring hospital's governance key (``sender_key``)."""
        args = (
            to_checksum_address(applicant),
            int(role),
            as_bytes32(data_key),
            as_bytes32(name_hash),
        )
        return self._send(
            "sponsorAdmission",
            *args,
            as_signature(applicant_signature),
            sender_key=sender_key,
            gas=600_000,
        )

    def propose_removal(self, member_id: int, *, sender_key: str | None = None) -> TxReceipt:
        return self._send("proposeRemoval", member_id, sender_key=sender_key, gas=400_000)

    def propose_rotation(
        self, member_id: int, new_governance: str, *, sender_key: str | None = None
    ) -> TxReceipt:
        return self._send(
            "proposeRotation",
            member_id,
            to_checksum_address(new_governance),
            sender_key=sender_key,
            gas=400_000,
        )

    def vote(self, proposal_id: int, support: bool, *, sender_key: str | None = None) -> TxReceipt:
        return self._send("vote", proposal_id, support, sender_key=sender_key, gas=600_000)

    def finalize(self, proposal_id: int, *, sender_key: str | None = None) -> TxReceipt:
        return self._send("finalize", proposal_id, sender_key=sender_key, gas=300_000)

    def set_delegate(
        self, delegate: str, scope: int, enabled: bool, *, sender_key: str | None = None
    ) -> TxReceipt:
        args = (to_checksum_address(delegate), int(scope), enabled)
        return self._send("setDelegate", *args, sender_key=sender_key, gas=200_000)

    def register_node(
        self,
        node_id: bytes | str,
        signer: str,
        data_key: bytes | str,
        *,
        sender_key: str | None = None,
    ) -> TxReceipt:
        args = (as_bytes32(node_id), to_checksum_address(signer), as_bytes32(data_key))
        return self._send("registerNode", *args, sender_key=sender_key, gas=250_000)

    def revoke_node(self, node_id: bytes | str, *, sender_key: str | None = None) -> TxReceipt:
        return self._send("revokeNode", as_bytes32(node_id), sender_key=sender_key, gas=150_000)

    def rotate_node_key(
        self, node_id: bytes | str, data_key: bytes | str, *, sender_key: str | None = None
    ) -> TxReceipt:
        args = (as_bytes32(node_id), as_bytes32(data_key))
        return self._send("rotateNodeKey", *args, sender_key=sender_key, gas=150_000)

    # events

    @staticmethod
    def proposal_id_from(events: Sequence[ChainEvent]) -> int:
        """The id in the ProposalOpened event of a sponsor/propose receipt."""
        for event in events:
            if event.name == "ProposalOpened":
                return int(event.args["proposalId"])
        raise LookupError("no ProposalOpened event")
