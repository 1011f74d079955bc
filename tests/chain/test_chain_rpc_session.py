"""A JSON-RPC client shares one HTTP session among its threads and reads the environment's
proxy settings once, when it is built, not on every call."""

from __future__ import annotations

import threading

import requests.sessions

from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from chain.client import ChainClient, rpc_session


def test_it_takes_the_proxy_and_ca_bundle_from_the_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "rpc.internal")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")

    proxied = rpc_session("https://rpc.example/v1/key")
    direct = rpc_session("https://rpc.internal:8545")

    assert proxied.proxies["https"] == "http://proxy.example:3128"
    assert "https" not in direct.proxies
    assert proxied.verify == "/etc/ssl/our-ca.pem"
    assert proxied.trust_env is False  # not read again on each call


def test_threads_share_one_session_and_never_read_the_environment(anvil: AnvilNode, monkeypatch):
    client = ChainClient.from_url(anvil.url, relayer_key=ANVIL_DEV_KEYS[0])
    reads: list[int] = []
    real = requests.sessions.get_environ_proxies
    monkeypatch.setattr(
        requests.sessions, "get_environ_proxies", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    heads: list[int] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            heads.extend(client.head() for _ in range(5))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors and len(heads) == 40 and min(heads) >= 0
    assert reads == []
    provider = client.w3.provider
    assert provider._request_session_manager._explicit_session is not None  # type: ignore[attr-defined]
