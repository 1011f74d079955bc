from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from chain import actions
from chain.errors import ChainUnavailable, ContractError
from portal.core import chain as portal_chain
from portal.core.exceptions import ServiceError
from portal.core.models import ChainSyncState
from portal.core.schema import error_responses
from portal.core.web import jsonable, status_of


class TypedDataSerializer(serializers.Serializer):
    """EIP-712 typed data, ready for a wallet's `eth_signTypedData_v4`."""

    types = serializers.DictField(child=serializers.ListField(child=serializers.DictField()))
    primaryType = serializers.CharField()
    domain = serializers.DictField()
    message = serializers.DictField()


def typed_data(typed: dict[str, Any]) -> dict[str, Any]:
    """Typed data as the API answers it: the pages' JSON shape (see ``web.jsonable``)."""
    return TypedDataSerializer(jsonable(typed)).data  # type: ignore[return-value]


def typed_data_response(typed: dict[str, Any]) -> Response:
    return Response(typed_data(typed))


V = TypeVar("V", bound=type[APIView])


def signed_action_schema(
    name: str,
    *,
    request: Any = None,
    relays: Any = None,
    status_code: int = 200,
    errors: Sequence[int] = (400, 403, 404, 503),
    **extra: Any,
) -> Callable[[V], V]:
    """The OpenAPI entry of a route of signed action ``name``, from its declaration.

    Without ``relays`` it is the typed-data route (answers the typed data); with it, the
    relay route answering ``relays`` with ``status_code``. Either way the description adds,
    after the view's docstring, the type the wallet signs, whose key signs it and in which
    contract's domain, and the operation carries them as ``x-signed-action``.
    """
    declared = actions.action(name)
    about = (
        f"Signed action `{declared.encode_type}`, signed by {declared.signer} in the "
        f"EIP-712 domain {declared.contract} publishes (ERC-5267 `eip712Domain()`)."
    )
    if relays is not None:
        about += (
            " Send the signature of the typed data from the matching `typed-data/` route; "
            "the portal checks who signed it, then relays it and mirrors its events."
        )
    info = {
        "type": declared.encode_type,
        "signer": declared.signer.value,
        "contract": declared.contract,
        "role": "relay" if relays is not None else "typed-data",
    }

    def decorate(view: V) -> V:
        doc = inspect.cleandoc(view.__doc__ or "")
        return extend_schema(  # type: ignore[no-any-return]
            # A name: the view's own nested serializer, which does not exist before the class.
            request=getattr(view, request) if isinstance(request, str) else request,
            responses={
                status_code: relays if relays is not None else TypedDataSerializer,
                **error_responses(*errors),
            },
            description=f"{doc}\n\n{about}" if doc else about,
            extensions={"x-signed-action": info},
            **extra,
        )(view)

    return decorate


class SecondFactorVerified(BasePermission):
    """A browser session of an admin counts only once its TOTP code was verified.

    Tokens are issued only against a TOTP code, so token requests pass.
    """

    message = (
        "verify your two-factor code in the portal first (admins must), "
        "or use an API token from /api/v1/auth/token/"
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        from portal.consortium.selectors import needs_second_factor

        if not isinstance(request.successful_authenticator, SessionAuthentication):
            return True
        user = request.user
        if not needs_second_factor(user):
            return True
        return bool(getattr(user, "is_verified", lambda: False)())


class MemberApi(APIView):
    """Base for routes that need a signed-in person (an admin's session: with its TOTP code)."""

    permission_classes = [IsAuthenticated, SecondFactorVerified]


class ListApi(ListAPIView):  # type: ignore[type-arg]
    """Base for list routes: one page (portal.core.pagination) of ``get_queryset()``, the
    viewer's selector, serialized with ``many=True``.

    The selector's queryset joins or prefetches what the serializer reads, so a page costs
    the same queries at 1 row as at 1000 (tests/portal/core/test_list_queries.py).
    """

    permission_classes = [IsAuthenticated, SecondFactorVerified]


class PublicApi(APIView):
    """Base for routes anyone may call: no session, so no CSRF token needed."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [AnonRateThrottle]


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field in ("non_field_errors", "detail") else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is JSON: {"error": one sentence, "code": ..., "detail": per field}."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.messages)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, ServiceError):
        return Response({"error": exc.message, "code": exc.code}, status=status_of(exc))
    elif isinstance(exc, ContractError):
        return Response(
            {"error": f"the chain refused: {exc}", "code": exc.name},
            status=status.HTTP_409_CONFLICT,
        )
    elif isinstance(exc, ChainUnavailable | portal_chain.NotDeployed):
        return Response(
            {"error": f"the chain is unavailable: {exc}", "code": "chain_unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = getattr(exc, "default_code", "error")
    response.data = {"error": _first_message(detail), "code": code, "detail": detail}
    return response


def health_report() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": str(exc)}
    try:
        from portal.celery import app

        broker_check(app)
        checks["broker"] = {"ok": True, "url": _without_credentials(app.conf.broker_url)}
    except Exception as exc:
        checks["broker"] = {"ok": False, "error": str(exc)}
    try:
        head = portal_chain.client().head()
        checks["chain"] = {
            "ok": True,
            "head": head,
            "rpc": _without_credentials(settings.CHAIN_RPC_URL),
        }
    except Exception as exc:
        checks["chain"] = {"ok": False, "error": str(exc)}
    states = list(ChainSyncState.objects.order_by("name"))
    if not states:
        checks["sync"] = {"ok": False, "error": "the chain has not been synced yet"}
    else:
        # The mirror is as current as its furthest-behind contract.
        head = checks["chain"].get("head", max(s.head_block or 0 for s in states))
        blocks = [s.last_block for s in states]
        last = None if None in blocks else min(b for b in blocks if b is not None)
        lag = None if head is None or last is None else head - last
        errors = [f"{s.name}: {s.last_error}" for s in states if s.last_error]
        successes = [s.last_success_at for s in states if s.last_success_at is not None]
        checks["sync"] = {
            "ok": not errors and lag is not None and lag <= 50,
            "last_block": last,
            "lag_blocks": lag,
            "last_success_at": min(successes) if len(successes) == len(states) else None,
            "last_error": "; ".join(errors),
        }
    urls = (settings.CHAIN_RPC_URL, str(settings.CELERY_BROKER_URL))
    for check in checks.values():
        if "error" in check:
            check["error"] = _redacted(str(check["error"]), *urls)
    return all(c["ok"] for c in checks.values()), checks


_redis_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """One client, with its connection pool, per process and URL, shared by every thread.

    /health is polled by every load balancer every few seconds: a new connection on each
    poll cost a TCP handshake (and TLS, AUTH, SELECT) and left the socket to close.
    redis-py's pool is thread-safe and starts afresh in a forked child.
    """
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            _redis_clients[url] = client
        return client


def broker_check(app: Any) -> None:
    """Raises if the Celery broker cannot be reached. A Redis broker is pinged over the
    process's shared client; the embedded SQLite broker is a file that kombu opens."""
    url = str(app.conf.broker_url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        redis_client(url).ping()
        return
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _without_credentials(url: str) -> str:
    """A URL fit to show: no user, password, query or fragment (RPC keys often live there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", "")).rstrip("/") + (
        f" (port {parts.port})" if parts.port else ""
    )


def _redacted(text: str, *urls: str) -> str:
    """``text`` without the parts of ``urls`` that may hold credentials (an error message
    often repeats the URL, or its path and query, where RPC providers put API keys)."""
    for url in urls:
        parts = urlsplit(url)
        for secret in (url, parts.username, parts.password, parts.query, parts.path):
            if secret and len(secret) > 1:
                text = text.replace(secret, "…")
    return text


class HealthThrottle(AnonRateThrottle):
    scope = "health"


class HealthApi(APIView):
    """Database, broker, chain and sync lag, for load balancers and operators.

    Anyone gets ok / not ok; only signed-in staff and governors get the parts, which
    name the servers behind the portal (never their credentials) and their errors.
    """

    permission_classes = [AllowAny]
    throttle_classes = [HealthThrottle]

    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        checks = serializers.DictField(required=False, help_text="signed-in staff only")

    @extend_schema(responses={200: OutputSerializer, 503: OutputSerializer})
    def get(self, request: Request) -> Response:
        ok, checks = health_report()
        body: dict[str, Any] = {"ok": ok}
        user = request.user
        if user.is_authenticated and (user.is_staff or hasattr(user, "staff")):
            body["checks"] = checks
        return Response(
            body, status=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
        )


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _resolves(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.func is not api_not_found


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The last /api/ route: a path no route matches, or whose id is malformed, is a JSON 404.

    A route rather than handler404, which Django skips while DEBUG is on.
    """
    hint = "check the path and the ids in it against /api/docs/"
    if not request.path.endswith("/") and _resolves(request.path + "/"):
        hint = f"API routes end with a slash: {request.path}/"
    return JsonResponse(
        {"error": f"no API route matches {request.path}: {hint}", "code": "not_found"},
        status=status.HTTP_404_NOT_FOUND,
    )


def bad_request(request: HttpRequest, exception: Exception) -> Any:
    """handler400: what Django refuses before a view runs (a body too large, a bad host)."""
    if _is_api(request):
        return JsonResponse(
            {"error": f"the request was refused: {exception}", "code": "bad_request"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> Any:
    """handler500: an API client gets JSON too; the traceback goes to the log, not to it."""
    if _is_api(request):
        return JsonResponse(
            {
                "error": "the portal failed to answer; its operators have the details in its log",
                "code": "server_error",
            },
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
