"""Personas and helpers for the ConsortiumRegistry tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from chain import eip712, errors
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry, Founder, Role

QUORUM_BPS = 5000
VOTING_PERIOD = 3600


@dataclass(frozen=True)
class Persona:
    name: str
    key: str
    address: str

    @property
    def data_key(self) -> bytes:
        return keccak(text=f"data-key:{self.name}")

    @property
    def name_hash(self) -> bytes:
        return keccak(text=self.name)


def persona(name: str) -> Persona:
    key = "0x" + keccak(text=f"persona:{name}").hex()
    return Persona(name, key, Account.from_key(key).address)


MARY, CITY, NORTH = persona("mary"), persona("city"), persona("north")
LAB = persona("lab")  # a founding diagnostic server
HARBOUR, EVE, NEWKEY, BOT = persona("harbour"), persona("eve"), persona("newkey"), persona("bot")
HOSPITALS = (MARY, CITY, NORTH)
EVERYONE = (MARY, CITY, NORTH, LAB, HARBOUR, EVE, NEWKEY, BOT)


@dataclass
class Deployment:
    client: ChainClient
    registry: ConsortiumRegistry


def deploy(client: ChainClient, quorum_bps: int = QUORUM_BPS) -> ConsortiumRegistry:
    founders = [Founder(p.address, Role.HOSPITAL, p.data_key, p.name_hash) for p in HOSPITALS]
    founders.append(Founder(LAB.address, Role.DIAGNOSTIC_SERVER, LAB.data_key, LAB.name_hash))
    return ConsortiumRegistry.deploy(
        client, founders=founders, quorum_bps=quorum_bps, voting_period=VOTING_PERIOD
    )


@contextmanager
def reverts(name: str, **args: Any) -> Iterator[None]:
    """Expect the Solidity custom error ``name`` with exactly these arguments."""
    with pytest.raises(errors.lookup(name)) as info:
        yield
    assert type(info.value).__name__ == name
    assert info.value.args_dict == args


def sign(p: Persona, typed: eip712.TypedData) -> bytes:
    return eip712.sign_typed(p.key, typed)


def application_signature(reg: ConsortiumRegistry, applicant: Persona, role: int = 1) -> bytes:
    typed = reg.application_typed(applicant.address, role, applicant.data_key, applicant.name_hash)
    return sign(applicant, typed)


def sponsor(
    reg: ConsortiumRegistry, applicant: Persona, *, by: Persona = MARY, role: int = 1
) -> int:
    """Open an admission proposal for ``applicant``; returns its id."""
    sig = application_signature(reg, applicant, role)
    receipt = reg.sponsor_admission(
        applicant.address, role, applicant.data_key, applicant.name_hash, sig, sender_key=by.key
    )
    return reg.proposal_id_from(reg.decode_events(receipt))


def admit(reg: ConsortiumRegistry, applicant: Persona, *, role: int = 1) -> int:
    """Admit ``applicant`` with two founders' yes votes; returns its member id."""
    proposal_id = sponsor(reg, applicant, role=role)
    reg.vote(proposal_id, True, sender_key=MARY.key)
    reg.vote(proposal_id, True, sender_key=CITY.key)
    return reg.member_id_of(applicant.address)


def advance(client: ChainClient, seconds: int) -> None:
    """Move the chain's clock forward and mine a block there."""
    now = client.w3.eth.get_block("latest")["timestamp"]
    client.w3.testing.timeTravel(now + seconds)
    client.w3.testing.mine(1)


def names(reg: ConsortiumRegistry, receipt: Any) -> list[str]:
    return [e.name for e in reg.decode_events(receipt)]
