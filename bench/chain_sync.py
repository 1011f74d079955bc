"""Chain-sync mirror throughput against raw log fetching, on one anvil node.

Fills a fresh registry with NodeRegistered events (members registering
training nodes by signature), then times, on the same chain in the same run:
the baseline, fetching the registry's raw logs with eth_getLogs; and the
mirror, `chain_sync_run()` from empty cursors: fetch, decode, record each
event and upsert its node from the event's fields into the database.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from eth_account import Account
from eth_utils import keccak


def _key(label: str) -> str:
    return "0x" + keccak(text=f"medchain-bench:{label}").hex()


def _fill(events: int) -> tuple[Any, int, int]:
    """Deploy a registry and emit `events` NodeRegistered events; return (registry, from, to)."""
    import io
    import json
    import tempfile
    from pathlib import Path

    from django.core.management import call_command

    from chain import eip712
    from portal.core import chain as portal_chain

    founders = []
    keys = []
    for i in range(3):
        key = _key(f"founder-{i}")
        keys.append(key)
        founders.append(
            {
                "name": f"Bench Hospital {i}",
                "address": Account.from_key(key).address,
                "data_key": "0x" + bytes([0x40 + i]).hex() * 32,
            }
        )
    path = Path(tempfile.mkstemp(suffix=".json")[1])
    path.write_text(json.dumps(founders))
    call_command("deploy_contracts", founders=str(path), stdout=io.StringIO())
    deployment = portal_chain.deployment()
    registry = portal_chain.registry()
    client = portal_chain.client()
    for i in range(events):
        key, founder = keys[i % 3], founders[i % 3]["address"]
        signer = Account.from_key(_key(f"node-{i}")).address
        node_id = "0x" + keccak(text=f"bench-node-{i}").hex()
        data_key = "0x" + keccak(text=f"bench-data-{i}").hex()
        typed = eip712.typed_for(
            "RegisterNode",
            chain_id=client.chain_id,
            contract=deployment.address,
            node_id=node_id,
            signer=signer,
            data_key=data_key,
            nonce=registry.nonce(founder),
        )
        signature = eip712.sign_typed(key, typed)
        registry.send_signed("RegisterNode", typed["message"], signature, signer=founder)
    return registry, deployment.block_number, client.head()


def _reset_mirror() -> None:
    from portal.consortium.models import Member
    from portal.core.models import ChainEventRecord, ChainSyncState
    from portal.nodes.models import Node

    Node.objects.all().delete()
    ChainEventRecord.objects.all().delete()
    ChainSyncState.objects.all().delete()
    Member.objects.filter(founding=False).delete()


def run(*, events: int = 300, repeats: int = 3) -> dict[str, Any]:
    from portal.core.sync import chain_sync_run

    registry, first, last = _fill(events)
    w3 = registry.client.w3
    total_logs = 0
    baseline: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        logs = w3.eth.get_logs({"address": registry.address, "fromBlock": first, "toBlock": last})
        baseline.append(time.perf_counter() - started)
        total_logs = len(logs)
    mirror: list[float] = []
    mirrored = 0
    for _ in range(repeats):
        _reset_mirror()
        started = time.perf_counter()
        result = chain_sync_run()
        mirror.append(time.perf_counter() - started)
        mirrored = result.processed
        if result.error:
            raise RuntimeError(f"chain sync failed: {result.error}")
    base_s, mirror_s = statistics.median(baseline), statistics.median(mirror)
    return {
        "name": "chain-sync mirror throughput",
        "events": total_logs,
        "mirrored": mirrored,
        "repeats": repeats,
        "baseline_seconds": round(base_s, 4),
        "mirror_seconds": round(mirror_s, 4),
        "baseline_events_per_s": round(total_logs / base_s, 1),
        "mirror_events_per_s": round(mirrored / mirror_s, 1),
        "mirror_vs_baseline": round((mirrored / mirror_s) / (total_logs / base_s), 4),
    }
