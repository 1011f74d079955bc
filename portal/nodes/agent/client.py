"""The hospital node's REST client: the only way a node reaches the portal's data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests


class PortalError(RuntimeError):
    """The portal answered with an error; `message` is the portal's own sentence."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class PortalUnreachable(PortalError):
    """No answer from the portal (down, wrong URL, network)."""


@dataclass(frozen=True)
class CheckInChallenge:
    node_id: str
    challenge: str
    expires_at: str
    chain_id: int
    registry: str


class NodeClient:
    """Talks to `/api/v1/` with the node's token (`Authorization: Token …`)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 15.0) -> None:
        if not token:
            raise PortalError("the node has no API token (issue one in the portal's Nodes page)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Token {token}", "Accept": "application/json"}
        )

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.post(url, json=payload or {}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PortalUnreachable(f"cannot reach the portal at {self.base_url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 401:
            raise PortalError(
                "the portal refused this node's token: it expired, or was revoked or replaced; "
                "issue a new one and restart the node",
                status=401,
                code=str(body.get("code", "not_authenticated")),
            )
        if not response.ok:
            message = body.get("error") or f"HTTP {response.status_code} from {url}"
            raise PortalError(str(message), status=response.status_code, code=body.get("code", ""))
        if not isinstance(body, dict):
            raise PortalError(f"unexpected answer from {url}: {body!r}")
        return body

    def check_in_challenge(self) -> CheckInChallenge:
        data = self._post("nodes/check-in/challenge/")
        return CheckInChallenge(
            node_id=data["node_id"],
            challenge=data["challenge"],
            expires_at=data["expires_at"],
            chain_id=int(data["chain_id"]),
            registry=data["registry"],
        )

    def check_in(self, *, challenge: str, signature: str) -> dict[str, Any]:
        return self._post("nodes/check-in/", {"challenge": challenge, "signature": signature})
