from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def current_member(request: HttpRequest) -> dict[str, Any]:
    # A request refused before AuthenticationMiddleware ran (a bad Host: the 400 page) has no user.
    user = getattr(request, "user", None)
    staff = getattr(user, "staff", None) if user is not None and user.is_authenticated else None
    # Prefixed so that a page's own "member" (the hospital it is about) never shadows the viewer's.
    return {
        "viewer_staff": staff,
        "viewer_member": staff.member if staff else None,
        "demo_keystores": settings.DEMO_KEYSTORES,
    }
