from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from portal.nodes.agent.keystore import NodeKeystore
from tests.node_keys import node_keystore

NODE_PASSWORD = "node-pass"


@pytest.fixture
def node_keys(tmp_path: Path) -> NodeKeystore:
    return node_keystore(tmp_path / "node", NODE_PASSWORD)


@pytest.fixture
def node(consortium, node_keys):
    """A node of the first founding hospital, registered on chain and mirrored."""
    from portal.consortium.models import Member
    from portal.nodes import services

    identity = node_keys.identity
    return services.node_register(
        member=Member.objects.get(governance_address=consortium[0].address),
        node_id=identity.node_id,
        signer_address=identity.signer_address,
        data_public_key=identity.data_public_key,
        label="mary-1",
    )


@pytest.fixture
def node_api(node) -> APIClient:
    """An API client holding the node's own token."""
    from portal.nodes import services

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {services.node_token_issue(node=node)}")
    return client
