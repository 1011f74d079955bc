"""The portal's one way to reach the chain: a ChainClient built from settings
and the registry wrapper at its recorded deployment address."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from django.conf import settings

from chain.client import ChainClient
from chain.datasets import DatasetRegistry
from chain.registry import ConsortiumRegistry
from portal.core.models import ContractDeployment

REGISTRY = "ConsortiumRegistry"
DATASETS = "DatasetRegistry"

W = TypeVar("W", ConsortiumRegistry, DatasetRegistry)

_local = threading.local()
_override: ChainClient | None = None


class NotDeployed(RuntimeError):
    """The registry has not been deployed on this chain yet (run `manage.py deploy_contracts`)."""


def use_client(client: ChainClient | None) -> None:
    """Point the portal at a given client (tests use an in-process eth-tester chain)."""
    global _override
    _override = client


def client() -> ChainClient:
    if _override is not None:
        return _override
    cached: ChainClient | None = getattr(_local, "client", None)
    if cached is None:
        cached = ChainClient.from_url(
            settings.CHAIN_RPC_URL, relayer_key=settings.CHAIN_RELAYER_KEY or None
        )
        _local.client = cached
    return cached


def deployment(name: str = REGISTRY) -> ContractDeployment:
    c = client()
    found = ContractDeployment.objects.filter(name=name, chain_id=c.chain_id).first()
    if found is None:
        raise NotDeployed(
            f"{name} is not deployed on chain {c.chain_id}: run `manage.py deploy_contracts`"
        )
    return found


def registry() -> ConsortiumRegistry:
    return _wrapper(ConsortiumRegistry, REGISTRY)


def datasets() -> DatasetRegistry:
    return _wrapper(DatasetRegistry, DATASETS)


def _wrapper(kind: type[W], name: str) -> W:
    """The wrapper at the recorded address, built once per thread and client.

    Building one parses the ABI into a web3 contract (~10 ms): chain sync asks
    for the registry once per event.
    """
    c = client()
    address = deployment(name).address
    cache: dict[tuple[str, str], Any] = _local.__dict__.setdefault("wrappers", {})
    found = cache.get((name, address))
    if not isinstance(found, kind) or found.client is not c:
        found = cache[(name, address)] = kind(c, address)
    return found


def followed_contracts() -> list[tuple[ContractDeployment, list[dict[str, Any]]]]:
    """Every deployed contract whose events the portal mirrors, with its ABI."""
    out = [(deployment(), registry().abi)]
    found = ContractDeployment.objects.filter(name=DATASETS, chain_id=client().chain_id).first()
    if found is not None:
        out.append((found, datasets().abi))
    return out
