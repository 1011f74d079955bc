from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from chain.errors import ChainUnavailable, ContractError
from portal.core import chain as portal_chain
from portal.core.models import ChainSyncState


class ServiceError(Exception):
    """A refusal a person can act on; the API answers it as 400 with the message."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


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
        return Response({"error": exc.message, "code": exc.code}, status=exc.status_code)
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

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
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
    state = ChainSyncState.objects.filter(name="registry").first()
    if state is None:
        checks["sync"] = {"ok": False, "error": "the chain has not been synced yet"}
    else:
        head = checks["chain"].get("head", state.head_block)
        lag = None if head is None or state.last_block is None else head - state.last_block
        checks["sync"] = {
            "ok": not state.last_error and lag is not None and lag <= 50,
            "last_block": state.last_block,
            "lag_blocks": lag,
            "last_success_at": state.last_success_at,
            "last_error": state.last_error,
        }
    urls = (settings.CHAIN_RPC_URL, str(settings.CELERY_BROKER_URL))
    for check in checks.values():
        if "error" in check:
            check["error"] = _redacted(str(check["error"]), *urls)
    return all(c["ok"] for c in checks.values()), checks


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
