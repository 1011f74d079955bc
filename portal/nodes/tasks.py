"""Tasks of hospital nodes.

`nodes.check_in` runs on a node's own queue (`node.<node-id>`), in a process
with no database: it reaches the portal only through the REST API.
`nodes.request_check_ins` runs on the portal's queue and asks each node.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from chain.deployment import DeploymentRecord
from portal.core.tasks import medchain_task


def node_settings() -> tuple[Path, str, str]:
    """The node's keystore directory, portal URL and API token, from its environment."""
    keystore = os.environ.get("MEDCHAIN_NODE_KEYSTORE", "")
    portal_url = os.environ.get("MEDCHAIN_PORTAL_URL", "")
    token_file = os.environ.get("MEDCHAIN_NODE_TOKEN_FILE", "")
    token = Path(token_file).read_text().strip() if token_file else ""
    token = token or os.environ.get("MEDCHAIN_NODE_TOKEN", "")
    if not keystore or not portal_url:
        raise RuntimeError("MEDCHAIN_NODE_KEYSTORE and MEDCHAIN_PORTAL_URL must be set on a node")
    return Path(keystore), portal_url, token


NODE_RPC_ENV = "MEDCHAIN_NODE_RPC_URL"


def node_chain_settings() -> tuple[str, DeploymentRecord]:
    """The node's own read-only RPC URL and its pinned deployment record (never the portal's)."""
    rpc_url = os.environ.get(NODE_RPC_ENV, "")
    if not rpc_url:
        raise RuntimeError(
            f"{NODE_RPC_ENV} must be set on a node: a read-only RPC URL of the chain, where it "
            "checks every anchor and grant instead of taking the portal's word"
        )
    return rpc_url, DeploymentRecord.load(Path(settings.CHAIN_DEPLOYMENT_RECORD))


@medchain_task("nodes.check_in")
def check_in(node_id: str) -> str:
    from portal.nodes.client import NodeClient
    from portal.nodes.keystore import NodeKeystore, password_from_env

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


@medchain_task("nodes.request_check_ins")
def request_check_ins() -> int:
    from portal.nodes.models import Node

    # Only nodes with a token can answer; a request older than one period is dropped.
    nodes = Node.objects.filter(active=True, user__isnull=False).only("node_id")
    count = 0
    for node in nodes:
        check_in.apply_async(
            args=[node.node_id], queue=node.queue, expires=settings.NODE_CHECK_IN_SECONDS
        )
        count += 1
    return count
