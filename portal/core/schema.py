"""The OpenAPI schema tells every answer a route can give, not only its success.

Error answers that follow from how a view is built (its body, path, authentication,
permissions and throttles) are added here once; answers that depend on what the view
does (409 from the chain, 503 when it is unreachable) are declared on the view.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="one sentence saying what to do about it")
    code = serializers.CharField()
    detail = serializers.JSONField(required=False, help_text="per-field messages, when any")


def error_responses(*codes: int) -> dict[int, Any]:
    """`responses` entries for `extend_schema`: each code answers with an ErrorSerializer body."""
    return dict.fromkeys(codes, ErrorSerializer)


ERROR_DESCRIPTIONS = {
    400: "Refused: the body is malformed, a field is invalid, or the action is not possible now",
    401: "No credentials, or an unknown token: send `Authorization: Token <token>`",
    403: "Signed in, but this person, member or node may not do this",
    404: "No such object for this caller, or no route matches the path (a malformed id)",
    409: "The chain refused the transaction; `code` names the contract's error",
    413: "The body is larger than this portal accepts",
    415: "The body's Content-Type is not one this route parses (send application/json)",
    429: "Too many requests from this address: wait and retry",
    503: "The chain is unreachable or its contracts are not deployed",
}


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the error answers each operation can give."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self.error_codes():
            responses.setdefault(str(code), self._get_response_for_code(ErrorSerializer, str(code)))
        for key, response in responses.items():
            if not response.get("description") and int(key) in ERROR_DESCRIPTIONS:
                response["description"] = ERROR_DESCRIPTIONS[int(key)]
        return dict(sorted(responses.items()))

    def error_codes(self) -> set[int]:
        """The codes the DRF machinery around the view can answer with, whatever it does."""
        view = self.view
        codes: set[int] = set()
        if self._parses_body():
            codes |= {400, 415}
        if "{" in self.path or self._paginates():
            # A list route's page past the last is a 404, as DRF's paginator answers it.
            codes.add(404)
        if view.get_authenticators():
            # An unknown or inactive token is refused even where no login is needed.
            codes.add(401)
        if not all(isinstance(p, AllowAny) for p in view.get_permissions()):
            codes.add(403)
            if view.get_authenticators():
                codes.add(401)
        if view.get_throttles():
            codes.add(429)
        return codes

    def _paginates(self) -> bool:
        return self.method == "GET" and self._get_paginator() is not None and self._is_list_view()

    def _parses_body(self) -> bool:
        if self.method not in ("POST", "PUT", "PATCH"):
            return False
        request = self.get_request_serializer()
        return request is not None and not isinstance(request, dict)
