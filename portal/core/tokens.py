"""API tokens: issued with an expiry, stored as a hash, listed and revoked by their holder.

A key is `mc_` and 43 URL-safe characters (256 bits): a fast SHA-256 is enough to store it,
since nobody can guess a key to match a stolen hash.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from portal.core.models import ApiToken
from portal.core.prepared import PreparedLookup

PREFIX_LENGTH = 10
#: last_used is written at most this often, not on every request.
LAST_USED_EVERY = timedelta(minutes=5)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _days(kind: str) -> int:
    return int(settings.NODE_TOKEN_DAYS if kind == ApiToken.Kind.NODE else settings.API_TOKEN_DAYS)


@transaction.atomic
def api_token_issue(*, user: User, kind: str = ApiToken.Kind.PERSON) -> tuple[ApiToken, str]:
    """A new token for ``user``; the key is returned once and never stored."""
    key = "mc_" + secrets.token_urlsafe(32)
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        kind=kind,
        key_hash=key_hash(key),
        prefix=key[:PREFIX_LENGTH],
        created=now,
        expires=now + timedelta(days=_days(kind)),
    )
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    """The token stops working at once."""
    token.delete()


def api_token_revoke_all(*, user_id: int) -> int:
    """Every token of the user stops working; how many there were."""
    deleted, _ = ApiToken.objects.filter(user_id=user_id).delete()
    return deleted


def api_token_list(*, viewer: User | AnonymousUser) -> QuerySet[ApiToken]:
    """The viewer's own tokens, newest first (a token is only ever its holder's to see)."""
    if not viewer.is_authenticated:
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=viewer).order_by("-created")


#: One query: the token, its user, and the user's staff row with its member, which every
#: permission and selector of the request then reads from the user (consortium.staff_of).
#: Its SQL is compiled once per process (more CPU than the query itself); every request
#: still reads the rows, so a revoked token or a deactivated user is refused at once.
_TOKEN_LOOKUP = PreparedLookup(
    lambda digest: ApiToken.objects.select_related("user__staff__member").filter(key_hash=digest)
)


def api_token_authenticate(*, key: str) -> ApiToken | None:
    """The live token whose key this is, its last use recorded; None if unknown or expired."""
    token = _TOKEN_LOOKUP.first(key_hash(key))
    if token is None or token.expired:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token
