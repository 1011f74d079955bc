from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from portal.consortium.selectors import needs_second_factor

# What an admin may reach before proving the second factor: signing in and out, proving
# it, accepting an invitation, static files, the health check, and the API's
# token route (which asks for the TOTP code itself) and its schema.
OPEN_PREFIXES = (
    "/accounts/",
    "/static/",
    "/health",
    "/ws/",
    "/api/v1/auth/token/",
    "/api/v1/health/",
    "/api/schema/",
    "/api/docs/",
)


class AdminTwoFactorMiddleware:
    """A member's admin (and any Django staff user) must verify a TOTP code to use the portal.

    This is the default for every page and API route alike, so a route added later
    cannot forget it. It judges the browser session: a request with an API token and
    no session passes here (tokens of admins are issued only against a TOTP code).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            user.is_authenticated
            and needs_second_factor(user)
            and not user.is_verified()  # type: ignore[union-attr,attr-defined]
            and not request.path.startswith(OPEN_PREFIXES)
        ):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {
                        "error": "verify your two-factor code in the portal first (admins "
                        "must), or use an API token from /api/v1/auth/token/",
                        "code": "second_factor_required",
                    },
                    status=403,
                )
            return redirect(f"{reverse('two_factor')}?next={request.path}")
        return self.get_response(request)
