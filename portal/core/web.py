"""Pieces every app's pages and APIs share: how a refusal reads and which status it gets,
and typed data in the JSON shape a browser wallet reads.

Services raise the exceptions of ``portal.core.exceptions``; this module is the one
place that knows which HTTP status each kind of refusal is answered with.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from chain.errors import ChainUnavailable, ContractError
from portal.core import chain as portal_chain
from portal.core import demokeys
from portal.core.exceptions import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    Throttled,
    TooLarge,
)

#: Every refusal a person can act on; shown as a message, never as a traceback.
REFUSALS = (ServiceError, ContractError, ChainUnavailable, portal_chain.NotDeployed)

_STATUS: dict[type[ServiceError], HTTPStatus] = {
    NotFound: HTTPStatus.NOT_FOUND,
    Forbidden: HTTPStatus.FORBIDDEN,
    Conflict: HTTPStatus.CONFLICT,
    TooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    Throttled: HTTPStatus.TOO_MANY_REQUESTS,
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status a service's refusal is answered with: by its kind, 400 otherwise."""
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return int(status)
    return int(HTTPStatus.BAD_REQUEST)


def refusal_message(exc: Exception) -> str:
    """One of REFUSALS as a page shows it: a refused standing as the rule of who may."""
    if isinstance(exc, Forbidden):
        return exc.rule
    if isinstance(exc, ServiceError):
        return exc.message
    if isinstance(exc, ContractError):
        return f"The chain refused this: {exc}"
    return f"The chain is unavailable, nothing was changed: {exc}"


def jsonable(value: Any) -> Any:
    """Typed data as a wallet reads it: bytes as 0x-hex, integers beyond JavaScript's exact
    range (2**53) as decimal text, which eth_signTypedData_v4 and eth_account both accept."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def json_error(message: str, status: int = HTTPStatus.BAD_REQUEST) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def refusal_response(exc: Exception) -> JsonResponse:
    """A page's JSON answer (the typed-data routes wallet.js calls) to one of REFUSALS."""
    status = status_of(exc) if isinstance(exc, ServiceError) else HTTPStatus.BAD_REQUEST
    return json_error(refusal_message(exc), status)


def typed_response(typed: dict[str, Any], signer: str) -> JsonResponse:
    return JsonResponse({"typed": jsonable(typed), "signer": signer})


def has_demo_key(governance_address: str) -> bool:
    """Whether the embedded demo holds a keystore for this governance address."""
    return demokeys.exists(governance_address)


def posted_signature(request: HttpRequest) -> str | None:
    """The wallet's signature from the form; None asks the service to use the demo keystore."""
    signature = request.POST.get("signature", "").strip()
    if signature:
        return signature
    if "demo" in request.POST:
        if not settings.DEMO_KEYSTORES:
            raise ServiceError("demo keystores are disabled on this portal: sign with your wallet")
        return None
    raise ServiceError(
        "no signature was sent: sign with your wallet (this needs JavaScript and a browser "
        "wallet such as MetaMask)"
    )
