"""Sign-in lockout: repeated wrong passwords or two-factor codes lock the account, and
separately the client address, until the window ends.

Our own small service on the shared cache rather than django-axes: one counter serves the
sign-in page, the Django admin's sign-in, the API token route and the two-factor step (axes
watches passwords only), and each caller words its own refusal (a page message, or JSON).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework import status

from portal.core.apis import ServiceError
from portal.core.ratelimit import client_address, window_clear, window_count, window_hit


class SignInLocked(ServiceError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS  # type: ignore[assignment]


def _account_key(username: str) -> str:
    # Hashed: a username may hold characters a cache key may not.
    return "signin:account:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


def _address_key(address: str) -> str:
    return f"signin:address:{address}"


def _window() -> int:
    return int(settings.SIGNIN_LOCKOUT_SECONDS)


def signin_check(*, username: str, address: str) -> None:
    """Refuse with SignInLocked while the account or the address is locked out."""
    failures, left = window_count(_account_key(username), seconds=_window())
    minutes = max(1, -(-left // 60))
    if failures >= settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT:
        raise SignInLocked(
            f"too many failed sign-ins for this account: it is locked for {minutes} more "
            "minutes (ask your hospital's admin if you forgot your password)",
            code="signin_locked",
        )
    failures, left = window_count(_address_key(address), seconds=_window())
    if failures >= settings.SIGNIN_MAX_FAILURES_PER_ADDRESS:
        raise SignInLocked(
            f"too many failed sign-ins from your address: try again in {minutes} minutes",
            code="signin_locked",
        )


def signin_failed(*, username: str, address: str) -> None:
    """Count a wrong password or two-factor code against the account and the address."""
    window_hit(_account_key(username), seconds=_window())
    window_hit(_address_key(address), seconds=_window())


def signin_succeeded(*, username: str) -> None:
    """A complete sign-in (second factor included) forgives the account's failures.

    The address keeps its count: one valid account must not reset guesses at others.
    """
    window_clear(_account_key(username), seconds=_window())


class LockoutModelBackend(ModelBackend):
    """Django's password check, refused while locked out and counted when wrong.

    Being the backend, it guards every password form (the admin's sign-in too); the views
    check first as well, to say why in words.
    """

    def authenticate(  # type: ignore[override]  # the stubs of the two bases disagree
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if request is None or not username:
            return super().authenticate(request, username, password, **kwargs)
        address = client_address(request)
        try:
            signin_check(username=username, address=address)
        except SignInLocked as exc:
            raise PermissionDenied(exc.message) from exc
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            signin_failed(username=username, address=address)
        return user
