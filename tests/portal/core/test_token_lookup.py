"""The API token lookup compiles its SQL once per process (portal.core.prepared) and still
reads the token, its user, staff row and member on every request: a revoked token, a
deactivated user or a member's removal counts from the next request on."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from portal.consortium.models import Member, Staff
from portal.consortium.selectors import staff_of
from portal.core.models import ApiToken
from portal.core.prepared import PreparedLookup
from portal.core.tokens import api_token_authenticate, api_token_issue, api_token_revoke

pytestmark = pytest.mark.django_db

NODES = "/api/v1/nodes/"


def _with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_reads_the_token_user_staff_and_member_in_one_query(
    clinician, django_assert_num_queries
):
    issued, key = api_token_issue(user=clinician)
    api_token_authenticate(key=key)  # the first use records last_used

    with django_assert_num_queries(1):
        token = api_token_authenticate(key=key)
        staff = staff_of(token.user)
        member = token.user.staff.member

    assert token == issued and token.user == clinician
    assert staff == Staff.objects.get(user=clinician) and member == staff.member
    assert isinstance(token.expires, datetime) and token.expires.tzinfo is not None
    assert token.user.is_active is True  # a boolean, converted as the ORM would
    assert token.kind == ApiToken.Kind.PERSON


def test_a_user_without_a_staff_row_has_none_without_another_query(django_assert_num_queries):
    user = User.objects.create_user("node-0abc", password="x" * 20)
    _, key = api_token_issue(user=user, kind=ApiToken.Kind.NODE)
    api_token_authenticate(key=key)

    with django_assert_num_queries(1):
        token = api_token_authenticate(key=key)
        assert staff_of(token.user) is None
        assert not hasattr(token.user, "staff")


def test_it_stops_a_token_revoked_after_it_was_used(clinician):
    token, key = api_token_issue(user=clinician)
    assert _with(key).get(NODES).status_code == 200

    api_token_revoke(token=token)

    response = _with(key).get(NODES)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_it_stops_a_token_whose_user_was_deactivated_after_it_was_used(clinician):
    _, key = api_token_issue(user=clinician)
    assert _with(key).get(NODES).status_code == 200

    User.objects.filter(pk=clinician.pk).update(is_active=False)

    response = _with(key).get(NODES)
    assert response.status_code == 401
    assert "disabled" in response.json()["error"]


def test_it_sees_a_removed_member_or_staff_row_on_the_next_request(clinician):
    _, key = api_token_issue(user=clinician)
    assert _with(key).get(NODES).status_code == 200

    Member.objects.filter(staff__user=clinician).update(status=Member.Status.REMOVED)
    assert _with(key).get(NODES).status_code == 403

    Staff.objects.filter(user=clinician).delete()
    assert _with(key).get(NODES).status_code == 403


def test_an_unknown_key_finds_nothing(db):
    assert api_token_authenticate(key="mc_" + "x" * 43) is None


def test_a_lookup_must_use_its_value_once_as_a_parameter(db):
    unused = PreparedLookup(lambda value: ApiToken.objects.all())
    twice = PreparedLookup(lambda value: ApiToken.objects.filter(key_hash=value, prefix=value))

    for lookup in (unused, twice):
        with pytest.raises(ValueError, match="once as a parameter"):
            lookup.first("x")
