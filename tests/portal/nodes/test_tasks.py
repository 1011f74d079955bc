from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import requests

from portal.nodes import services, tasks

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


def test_it_checks_in_from_the_node_through_the_rest_api(node, node_keys, monkeypatch):
    """The node task only speaks HTTP: route its requests into the test client."""
    from django.test import Client

    token = services.node_token_issue(node=node)
    web = Client()

    def post(self: requests.Session, url: str, json: Any = None, timeout: float = 0) -> Any:
        path = url.split("://", 1)[1].split("/", 1)[1]
        answer = web.post(
            "/" + path,
            json or {},
            content_type="application/json",
            HTTP_AUTHORIZATION=self.headers["Authorization"],
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        return response

    monkeypatch.setattr(requests.Session, "post", post)
    monkeypatch.setenv("MEDCHAIN_NODE_KEYSTORE", str(node_keys.directory))
    monkeypatch.setenv("MEDCHAIN_PORTAL_URL", "http://portal.invalid")
    monkeypatch.setenv("MEDCHAIN_NODE_TOKEN", token)
    monkeypatch.setenv("MEDCHAIN_NODE_PASSWORD", NODE_PASSWORD)
    tasks.check_in(node.node_id)
    node.refresh_from_db()
    assert node.is_online


def test_it_refuses_a_check_in_request_meant_for_another_node(node, node_keys, monkeypatch):
    monkeypatch.setenv("MEDCHAIN_NODE_KEYSTORE", str(node_keys.directory))
    monkeypatch.setenv("MEDCHAIN_PORTAL_URL", "http://portal.invalid")
    monkeypatch.setenv("MEDCHAIN_NODE_PASSWORD", NODE_PASSWORD)
    with pytest.raises(RuntimeError, match="not 0x"):
        tasks.check_in("0x" + "00" * 32)
