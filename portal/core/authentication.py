from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from portal.core.tokens import api_token_authenticate


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, looked up by the key's hash; expired keys are refused.

    A subclass of DRF's, so the header and the OpenAPI scheme stay as integrations know them.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = api_token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "the API token is unknown, revoked or expired: ask for a new one at "
                "/api/v1/auth/token/"
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("the account of this API token is disabled")
        return token.user, token
