"""`run_node` refuses to start a node that would have to take the portal's word for the chain."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from portal.nodes.agent import config
from portal.nodes.agent.keystore import NodeKeystore

NODE_PASSWORD = "node-pass"


@pytest.fixture
def node_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = NodeKeystore.create(tmp_path / "node", NODE_PASSWORD)
    monkeypatch.setenv("MEDCHAIN_NODE_PASSWORD", NODE_PASSWORD)
    monkeypatch.setenv("MEDCHAIN_NODE_TOKEN", "a-token")
    monkeypatch.delenv(config.NODE_RPC_ENV, raising=False)
    return keys.directory


def _run_node(node_dir: Path, *args: str) -> None:
    call_command(
        "run_node", "--keystore", str(node_dir), "--portal-url", "http://portal.invalid", *args,
        stdout=StringIO(),
    )  # fmt: skip


def test_it_refuses_to_start_without_its_own_rpc_url(node_dir: Path) -> None:
    with pytest.raises(CommandError, match="needs a read-only RPC URL") as refused:
        _run_node(node_dir)
    assert "\n" not in str(refused.value)


def test_it_refuses_to_start_without_a_pinned_deployment_record(
    node_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(CommandError, match="no chain deployment record at") as refused:
        _run_node(node_dir, "--rpc-url", "http://127.0.0.1:9", "--chain-record", str(missing))
    assert "\n" not in str(refused.value)


def test_its_fetch_task_refuses_to_run_without_an_rpc_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.NODE_RPC_ENV, raising=False)
    with pytest.raises(RuntimeError, match="MEDCHAIN_NODE_RPC_URL must be set on a node"):
        config.node_chain_settings()
