from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions

from portal.core import chain as portal_chain
from portal.core.apis import ServiceError, exception_handler


def _handle(exc: Exception):
    return exception_handler(exc, {})


def test_it_answers_a_service_error_with_its_message():
    response = _handle(ServiceError("the node is revoked", code="revoked"))
    assert response.status_code == 400
    assert response.data == {"error": "the node is revoked", "code": "revoked"}


def test_it_names_the_field_of_a_validation_error():
    response = _handle(exceptions.ValidationError({"signature": ["must be hex"]}))
    assert response.status_code == 400
    assert response.data["error"] == "signature: must be hex"
    assert response.data["detail"] == {"signature": ["must be hex"]}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (DjangoValidationError("bad value"), 400),
        (PermissionDenied("not yours"), 403),
        (Http404("no such thing"), 404),
        (exceptions.NotAuthenticated(), 401),
        (portal_chain.NotDeployed("run deploy_contracts"), 503),
    ],
)
def test_it_turns_every_refusal_into_json(exc, status):
    response = _handle(exc)
    assert response.status_code == status
    assert isinstance(response.data["error"], str) and response.data["error"]
    assert response.data["code"]


def test_it_leaves_unexpected_errors_to_the_server():
    assert _handle(RuntimeError("bug")) is None
