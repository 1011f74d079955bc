from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

# Pages an admin may reach before proving the second factor.
_OPEN_PREFIXES = ("/accounts/", "/static/", "/api/", "/health", "/apply", "/ws/")


class AdminTwoFactorMiddleware:
    """A member's admin (and any Django staff user) must verify a TOTP code to use the portal.

    The API is exempt: integrations authenticate with tokens, which are issued
    only from a verified session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            user.is_authenticated
            and _needs_second_factor(user)
            and not user.is_verified()  # type: ignore[union-attr,attr-defined]
            and not request.path.startswith(_OPEN_PREFIXES)
        ):
            return redirect(f"{reverse('two_factor')}?next={request.path}")
        return self.get_response(request)


def _needs_second_factor(user: object) -> bool:
    from portal.consortium.models import Staff

    if getattr(user, "is_staff", False):
        return True
    staff = getattr(user, "staff", None)
    return isinstance(staff, Staff) and staff.role == Staff.Role.ADMIN
