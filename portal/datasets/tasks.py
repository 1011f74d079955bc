"""Dataset tasks.

`datasets.fetch_and_verify` runs on a training node's own queue
(`node.<node-id>`), in a process with no database: REST API and chain only.
`datasets.cleanup_uploads` runs on the portal's queue and discards abandoned uploads.
"""

from __future__ import annotations

import os
from pathlib import Path

from portal.core.tasks import medchain_task


@medchain_task("datasets.fetch_and_verify")
def fetch_and_verify(dataset_id: str, version: int | None = None) -> str:
    from chain.client import ChainClient
    from portal.datasets.fetch import DatasetClient
    from portal.datasets.fetch import fetch_and_verify as fetch
    from portal.nodes.keystore import NodeKeystore, password_from_env
    from portal.nodes.tasks import node_chain_settings, node_settings

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


@medchain_task("datasets.cleanup_uploads")
def cleanup_uploads() -> int:
    from portal.datasets.services import uploads_cleanup

    return uploads_cleanup()
