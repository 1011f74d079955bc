"""Personas and a small registry for the chain package's tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from eth_account import Account
from eth_utils import keccak

from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry, Founder, Role


@dataclass(frozen=True)
class Persona:
    name: str
    key: str
    address: str


def persona(name: str) -> Persona:
    key = "0x" + keccak(text=f"chain-persona:{name}").hex()
    return Persona(name, key, Account.from_key(key).address)


MARY, CITY, NORTH, LAB, HARBOUR, EVE = (
    persona(n) for n in ("mary", "city", "north", "lab", "harbour", "eve")
)
EVERYONE = (MARY, CITY, NORTH, LAB, HARBOUR, EVE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fund_everyone(client: ChainClient) -> None:
    for p in EVERYONE:
        if client.balance(p.address) < 10**18:
            client.fund(p.address, 10**19)


def deploy_registry(client: ChainClient) -> ConsortiumRegistry:
    fund_everyone(client)
    founders = [
        Founder(p.address, Role.HOSPITAL, keccak(text=p.name), keccak(text="n" + p.name))
        for p in (MARY, CITY, NORTH)
    ]
    founders.append(Founder(LAB.address, Role.DIAGNOSTIC_SERVER, b"\x01" * 32, b"\x02" * 32))
    return ConsortiumRegistry.deploy(client, founders=founders, quorum_bps=5000, voting_period=3600)
