from __future__ import annotations

from datetime import datetime
from unittest import mock

import pytest

from portal.nodes import services, tasks
from portal.nodes.agent import tasks as node_tasks

NODE_PASSWORD = "node-pass"

pytestmark = pytest.mark.django_db


def test_it_asks_each_node_with_a_token_on_its_own_queue(node):
    with mock.patch.object(tasks.check_in, "apply_async") as send:
        assert tasks.request_check_ins() == 0  # no token yet: it could not answer
        services.node_token_issue(node=node)
        assert tasks.request_check_ins() == 1
    send.assert_called_once()
    assert send.call_args.kwargs["queue"] == f"node.{node.node_id}"
    assert send.call_args.kwargs["args"] == [node.node_id]


@pytest.mark.django_db(transaction=True)  # the live server's thread sees the rows
def test_it_checks_in_from_the_node_through_the_rest_api(node, node_keys, live_server, monkeypatch):
    """The node task only speaks HTTP: it calls a live test server, as a node calls the portal."""
    monkeypatch.setenv("MEDCHAIN_NODE_KEYSTORE", str(node_keys.directory))
    monkeypatch.setenv("MEDCHAIN_PORTAL_URL", live_server.url)
    monkeypatch.setenv("MEDCHAIN_NODE_TOKEN", services.node_token_issue(node=node))
    monkeypatch.setenv("MEDCHAIN_NODE_PASSWORD", NODE_PASSWORD)

    last = node_tasks.check_in(node.node_id)

    node.refresh_from_db()
    assert node.is_online
    assert datetime.fromisoformat(last) == node.last_check_in


def test_it_refuses_a_check_in_request_meant_for_another_node(node, node_keys, monkeypatch):
    monkeypatch.setenv("MEDCHAIN_NODE_KEYSTORE", str(node_keys.directory))
    monkeypatch.setenv("MEDCHAIN_PORTAL_URL", "http://portal.invalid")
    monkeypatch.setenv("MEDCHAIN_NODE_PASSWORD", NODE_PASSWORD)
    with pytest.raises(RuntimeError, match="not 0x"):
        node_tasks.check_in("0x" + "00" * 32)
