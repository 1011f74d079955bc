"""The DatasetRegistry on top of the consortium, phantom packages and nodes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from datasets_api_helpers import NODE_PASSWORD, pinned_record
from eth_account import Account

from portal.nodes.agent.keystore import NodeKeystore
from tests.node_keys import node_keystore
from training.ingest.dataset import PackageResult, package_dataset
from training.ingest.phantoms import write_ct_dataset


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> tuple[Path, Path]:
    """Twenty 256x256 CT phantoms: three ciphertext chunks once packaged."""
    folder = tmp_path_factory.mktemp("phantoms")
    annotations = write_ct_dataset(folder / "dicom", profile="hospital-a", count=20, seed=7)
    return folder / "dicom", annotations


@pytest.fixture
def package(phantoms, tmp_path: Path) -> PackageResult:
    source, annotations = phantoms
    return package_dataset(
        source,
        annotations,
        tmp_path / "pkg",
        dataset_id=str(uuid.uuid4()),
        uid_secret=b"s" * 32,
    )


def _register_node(member, keys: NodeKeystore, label: str):
    from portal.nodes import services

    identity = keys.identity
    return services.node_register(
        member=member,
        node_id=identity.node_id,
        signer_address=identity.signer_address,
        data_public_key=identity.data_public_key,
        label=label,
    )


@pytest.fixture
def mary(consortium):
    from portal.consortium.models import Member

    return Member.objects.get(governance_address=consortium[0].address)


@pytest.fixture
def node_keys(tmp_path: Path) -> NodeKeystore:
    return node_keystore(tmp_path / "node", NODE_PASSWORD)


@pytest.fixture
def node(consortium, mary, node_keys):
    """A training node of the first founder (the uploader's own)."""
    return _register_node(mary, node_keys, "mary-1")


@pytest.fixture
def other_node_keys(tmp_path: Path) -> NodeKeystore:
    return node_keystore(tmp_path / "other-node", NODE_PASSWORD, template="other-node")


@pytest.fixture
def other_node(consortium, other_node_keys):
    """A training node of the second founder: granted nothing."""
    from portal.consortium.models import Member

    member = Member.objects.get(governance_address=consortium[1].address)
    return _register_node(member, other_node_keys, "city-1")


@dataclass
class Steward:
    """St. Mary's data steward: a portal login and its own Data delegate key on chain."""

    user: Any
    key: str
    address: str


@pytest.fixture
def steward(consortium, mary) -> Steward:
    from chain.consortium_registry import Scope
    from portal.consortium import services
    from portal.consortium.models import Staff
    from portal.core import chain as portal_chain
    from portal.core.sync import chain_sync_run

    key = "0x" + (0x3000).to_bytes(32, "big").hex()
    address = Account.from_key(key).address
    # The admin's governance key enables the delegate; the steward never holds it.
    portal_chain.registry().set_delegate(address, Scope.DATA, True, sender_key=consortium[0].key)
    chain_sync_run()
    user = services.staff_create(
        member=mary,
        username="mary-steward",
        password="mary-pass-123",
        email="steward@mary.example",
        role=Staff.Role.STEWARD,
    ).user
    return Steward(user=user, key=key, address=address)


@pytest.fixture
def steward_chain(datasets_chain, chain_client, settings, tmp_path: Path, monkeypatch):
    """The steward's own chain connection (the in-process chain) and pinned deployment record."""
    from portal.datasets.management.commands.upload_dataset import RPC_ENV, Command

    monkeypatch.setattr(Command, "chain_factory", staticmethod(lambda url: chain_client))
    monkeypatch.setenv(RPC_ENV, "http://steward-own-rpc.invalid")
    settings.CHAIN_DEPLOYMENT_RECORD = tmp_path / "chain-deployment.json"
    pinned_record(chain_client).write(settings.CHAIN_DEPLOYMENT_RECORD)
