from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def current_member(request: HttpRequest) -> dict[str, Any]:
    staff = getattr(request.user, "staff", None) if request.user.is_authenticated else None
    return {
        "staff": staff,
        "member": staff.member if staff else None,
        "demo_keystores": settings.DEMO_KEYSTORES,
    }
