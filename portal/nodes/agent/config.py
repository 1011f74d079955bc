"""A node's settings, from the environment `manage.py run_node` gives its worker."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from chain.deployment import DeploymentRecord

NODE_RPC_ENV = "MEDCHAIN_NODE_RPC_URL"


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


def node_chain_settings() -> tuple[str, DeploymentRecord]:
    """The node's own read-only RPC URL and its pinned deployment record (never the portal's)."""
    rpc_url = os.environ.get(NODE_RPC_ENV, "")
    if not rpc_url:
        raise RuntimeError(
            f"{NODE_RPC_ENV} must be set on a node: a read-only RPC URL of the chain, where it "
            "checks every anchor and grant instead of taking the portal's word"
        )
    return rpc_url, DeploymentRecord.load(Path(settings.CHAIN_DEPLOYMENT_RECORD))
