"""The portal's one way to reach the chain: a ChainClient built from settings
and the registry wrapper at its recorded deployment address.

Both are built once per process and shared by every thread. Under ASGI each
request's sync code runs in a thread of its own, so a per-thread cache rebuilt
them on every request (~19 ms against ~0.6 ms, issue 10). Sharing is safe:
web3 8 keeps its per-call state per thread (one HTTP session per thread id,
batching in a context variable, its request cache behind a lock), and the
wrappers hold nothing that changes after they are built.
"""

from __future__ import annotations

import os
import threading
from typing import Any, TypeVar

from django.conf import settings

from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry
from chain.dataset_registry import DatasetRegistry
from portal.core.models import ContractDeployment

REGISTRY = "ConsortiumRegistry"
DATASETS = "DatasetRegistry"

W = TypeVar("W", ConsortiumRegistry, DatasetRegistry)

_lock = threading.Lock()
# (pid, rpc url, relayer key) -> client, and (name, address) -> wrapper of the current client.
# The pid keeps a forked child (a Celery prefork worker) off its parent's HTTP sessions.
_clients: dict[tuple[int, str, str], ChainClient] = {}
_wrappers: dict[tuple[str, str], Any] = {}
_override: ChainClient | None = None


class NotDeployed(RuntimeError):
    """The registry has not been deployed on this chain yet (run `manage.py deploy_contracts`)."""


def use_client(client: ChainClient | None) -> None:
    """Point the portal at a given client (tests use an in-process eth-tester chain), or
    with None back at settings; either way the next call builds afresh."""
    global _override
    with _lock:
        _override = client
        _clients.clear()
        _wrappers.clear()


def client() -> ChainClient:
    """The process's client for settings.CHAIN_RPC_URL, built by the first caller.

    A failed build (the node down) caches nothing: the next call tries again.
    """
    if _override is not None:
        return _override
    key = (os.getpid(), settings.CHAIN_RPC_URL, settings.CHAIN_RELAYER_KEY)
    found = _clients.get(key)
    if found is None:
        with _lock:
            found = _clients.get(key)
            if found is None:
                found = ChainClient.from_url(
                    settings.CHAIN_RPC_URL, relayer_key=settings.CHAIN_RELAYER_KEY or None
                )
                _clients.clear()  # another pid's or URL's client is never asked for again
                _clients[key] = found
    return found


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
    """The wrapper at the recorded address, built once per process and client.

    Building one parses the ABI into a web3 contract (~10 ms): chain sync asks
    for the registry once per event, and most API requests once. The address is
    read from the database each time, so a redeployment is picked up at once.
    """
    c = client()
    address = deployment(name).address
    key = (name, address)
    found = _wrappers.get(key)
    if not isinstance(found, kind) or found.client is not c:
        with _lock:
            found = _wrappers.get(key)
            if not isinstance(found, kind) or found.client is not c:
                found = _wrappers[key] = kind(c, address)
    return found


def followed_contracts() -> list[tuple[ContractDeployment, ConsortiumRegistry | DatasetRegistry]]:
    """Every deployed contract whose events the portal mirrors, with its wrapper; the
    registry first, since every other contract's events refer to its members and nodes."""
    out: list[tuple[ContractDeployment, ConsortiumRegistry | DatasetRegistry]] = [
        (deployment(), registry())
    ]
    found = ContractDeployment.objects.filter(name=DATASETS, chain_id=client().chain_id).first()
    if found is not None:
        out.append((found, datasets()))
    return out
