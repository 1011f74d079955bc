"""The tasks a hospital node runs, on its own queue (`node.<node-id>`).

No database: each reaches the portal through the REST API with the node's
token and reads the chain over the node's own RPC URL. Their names keep the
app they serve (`nodes.`, `datasets.`): routing, the soak report and messages
already queued know them by these names.
"""

from __future__ import annotations

import os
from pathlib import Path

from chain.client import ChainClient
from portal.celery import medchain_task
from portal.nodes.agent.client import NodeClient
from portal.nodes.agent.config import node_chain_settings, node_settings
from portal.nodes.agent.fetch import DatasetClient
from portal.nodes.agent.fetch import fetch_and_verify as fetch
from portal.nodes.agent.keystore import NodeKeystore, password_from_env


@medchain_task("nodes.check_in")
def check_in(node_id: str) -> str:
    keystore_dir, portal_url, token = node_settings()
    keystore = NodeKeystore.open(keystore_dir, password_from_env())
    if keystore.identity.node_id != node_id:
        raise RuntimeError(
            f"this worker is node {keystore.identity.node_id}, not {node_id}: check its queue"
        )
    client = NodeClient(portal_url, token)
    challenge = client.check_in_challenge()
    signature = keystore.sign_check_in(
        chain_id=challenge.chain_id, registry=challenge.registry, challenge=challenge.challenge
    )
    result = client.check_in(challenge=challenge.challenge, signature=signature)
    return str(result["last_check_in"])


@medchain_task("datasets.fetch_and_verify")
def fetch_and_verify(dataset_id: str, version: int | None = None) -> str:
    keystore_dir, portal_url, token = node_settings()
    rpc_url, record = node_chain_settings()
    keystore = NodeKeystore.open(keystore_dir, password_from_env())
    cache = Path(os.environ.get("MEDCHAIN_NODE_CACHE", "") or keystore_dir.parent / "cache")
    result = fetch(
        client=DatasetClient(portal_url, token),
        keystore=keystore,
        cache_dir=cache,
        dataset_id=dataset_id,
        version=version,
        chain=ChainClient.from_url(rpc_url, relayer_key=None),
        record=record,
    )
    return str(result.folder)
