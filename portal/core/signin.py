"""Sign-in lockout: repeated wrong passwords or two-factor codes lock the account, and
separately the client address, for a whole window from the failure that reaches the limit.

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

from portal.core.exceptions import Throttled
from portal.core.ratelimit import (
    client_address,
    lock_left,
    lock_set,
    window_clear,
    window_hit,
    window_recent,
)


class SignInLocked(Throttled):
    """Too many wrong passwords or codes for this account or from this address."""


def _account_key(username: str) -> str:
    # Hashed: a username may hold characters a cache key may not.
    return "signin:account:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


def _address_key(address: str) -> str:
    return f"signin:address:{address}"


def _window() -> int:
    return int(settings.SIGNIN_LOCKOUT_SECONDS)


def signin_check(*, username: str, address: str) -> None:
    """Refuse with SignInLocked while the account or the address is locked out."""
    left = lock_left(_account_key(username))
    if left:
        raise SignInLocked(
            f"too many failed sign-ins for this account: it is locked for {_minutes(left)} "
            "more minutes (ask your hospital's admin if you forgot your password)",
            code="signin_locked",
        )
    left = lock_left(_address_key(address))
    if left:
        raise SignInLocked(
            f"too many failed sign-ins from your address: try again in {_minutes(left)} minutes",
            code="signin_locked",
        )


def _minutes(seconds: int) -> int:
    return max(1, -(-seconds // 60))


def signin_failed(*, username: str, address: str) -> None:
    """Count a wrong password or two-factor code against the account and the address, and
    lock either for a whole window once its failures of the last window reach the limit.

    The lock starts at the failure that reaches the limit, so its length does not depend on
    where the counting windows' edges fall, and failures either side of an edge add up.
    """
    for key, limit in (
        (_account_key(username), settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT),
        (_address_key(address), settings.SIGNIN_MAX_FAILURES_PER_ADDRESS),
    ):
        window_hit(key, seconds=_window())
        if window_recent(key, seconds=_window()) >= limit:
            lock_set(key, seconds=_window())


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
