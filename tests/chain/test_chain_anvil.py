from __future__ import annotations

import os
from pathlib import Path

from chain_helpers import deploy_registry, free_port
from eth_account import Account

from chain.anvil import ANVIL_DEV_KEYS, DEV_MNEMONIC, AnvilNode
from chain.client import ChainClient


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); a reaped process does not.
    return True


def test_it_keeps_its_state_across_a_graceful_restart(tmp_path: Path) -> None:
    node = AnvilNode(tmp_path / "state.json", free_port(), chain_id=4242)
    with node:
        pid = node.pid
        assert pid is not None and _alive(pid)
        client = ChainClient.from_url(node.url, relayer_key=ANVIL_DEV_KEYS[0])
        assert client.chain_id == 4242
        reg = deploy_registry(client)
        head = client.head()
    assert not _alive(pid) and node.pid is None
    assert (tmp_path / "state.json").stat().st_size > 0
    with node:
        client = ChainClient.from_url(node.url, relayer_key=ANVIL_DEV_KEYS[0])
        assert client.head() >= head
        restored = type(reg)(client, reg.address)
        assert (
            restored.member_count() == 4
            and restored.member(1).governance == reg.member(1).governance
        )
        logs = client.w3.eth.get_logs({"address": reg.address, "fromBlock": 0, "toBlock": "latest"})
        assert len(logs) == 4  # the founders' MemberAdmitted events survive too


def test_it_kills_by_pid(tmp_path: Path) -> None:
    node = AnvilNode(tmp_path / "state.json", free_port()).start()
    pid = node.pid
    assert pid is not None and node.is_ready()
    node.kill()
    assert not _alive(pid) and not node.is_ready()
    node.stop()  # stopping a stopped node is a no-op


def test_it_uses_the_well_known_dev_accounts(anvil_client: ChainClient) -> None:
    assert DEV_MNEMONIC.endswith("junk")
    accounts = anvil_client.w3.eth.accounts
    assert [Account.from_key(k).address for k in ANVIL_DEV_KEYS] == list(accounts[:10])
    assert anvil_client.relayer == accounts[0]
