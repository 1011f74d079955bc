"""The API tokens page: a person sees and revokes their own tokens, never another's."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.core.models import ApiToken
from portal.core.tokens import api_token_issue

pytestmark = pytest.mark.django_db


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_lists_the_holders_tokens_without_their_keys(clinician, second_admin):
    token, key = api_token_issue(user=clinician)
    other, _ = api_token_issue(user=second_admin)

    page = _signed_in(clinician).get("/tokens/").content.decode()

    assert token.prefix in page
    assert key not in page
    assert other.prefix not in page


def test_it_revokes_a_token_from_the_page(clinician):
    token, _ = api_token_issue(user=clinician)

    response = _signed_in(clinician).post("/tokens/", {"revoke": token.pk}, follow=True)

    assert "is revoked" in response.content.decode()
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_it_refuses_to_revoke_another_users_token_from_the_page(clinician, second_admin):
    victim, _ = api_token_issue(user=second_admin)

    response = _signed_in(clinician).post("/tokens/", {"revoke": victim.pk}, follow=True)

    assert "not one of yours" in response.content.decode()
    assert ApiToken.objects.filter(pk=victim.pk).exists()


def test_it_sends_anonymous_visitors_to_sign_in(db):
    assert Client().get("/tokens/")["Location"].startswith("/accounts/login/")
