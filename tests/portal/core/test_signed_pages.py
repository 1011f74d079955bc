"""The pages' signed actions are declarations that ask the registered check who acts, as
the API's routes do: walked from the URL resolver, so a page added later is covered."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import get_resolver

from portal.core import relay
from portal.core.exceptions import Forbidden
from portal.core.signed_views import SignedAction, SignedActionPage
from portal.core.web import refusal_message
from tests.routes import routes


def _declarations() -> dict[str, type[SignedAction]]:
    found: dict[str, type[SignedAction]] = {}
    for route, pattern in routes(get_resolver().url_patterns):
        page = getattr(pattern.callback, "view_class", None)
        declared = getattr(pattern.callback, "signed_action", None) or page
        if isinstance(declared, type) and issubclass(declared, SignedAction):
            found[route] = declared
    return found


def test_every_signed_page_route_has_a_registered_check():
    found = _declarations()
    typed = [r for r in found if "typed-data" in r]
    pages = [r for r, d in found.items() if issubclass(d, SignedActionPage) and r not in typed]
    assert len(typed) >= 7 and len(pages) >= 4, sorted(found)
    for route, declared in found.items():
        assert declared.action in relay._checks, f"{route}: nobody says who may act"


class _Unchecked(SignedAction):
    action = "RevokeNode"

    def typed(self, actor: object, subject: object) -> dict:
        raise AssertionError("the service ran without a check of who acts")


def test_a_page_whose_action_nobody_checks_refuses_to_run():
    request = RequestFactory().post("/x")
    request.user = AnonymousUser()
    with pytest.raises(LookupError, match="RevokeNode"):
        _Unchecked.bound(request).typed_answer()


def test_a_refused_standing_reads_as_the_rule_on_a_page_and_in_detail_in_the_api():
    refusal = Forbidden("only the admin of St. Mary's may vote; you are its clinician", rule="r")
    assert refusal_message(refusal) == "r"
    assert refusal.message.endswith("you are its clinician")
    assert refusal_message(Forbidden("no rule given")) == "no rule given"
