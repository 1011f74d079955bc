from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIRequestFactory

from chain import actions
from portal.core import relay
from portal.core.apis import PublicApi
from portal.core.signed_apis import RelayApi, SignedActionApi, TypedDataApi


def _views(patterns: list[URLPattern | URLResolver]) -> list[type]:
    found: list[type] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _views(pattern.url_patterns)
        elif (cls := getattr(pattern.callback, "cls", None)) is not None:
            found.append(cls)
    return found


def test_every_signed_action_route_has_its_pair_and_a_registered_check():
    routes = [v for v in _views(get_resolver().url_patterns) if issubclass(v, SignedActionApi)]
    typed = {v.action for v in routes if issubclass(v, TypedDataApi)}
    relayed = {v.action for v in routes if issubclass(v, RelayApi)}
    assert len(routes) >= 15
    assert relayed <= typed, "a relay route without its typed-data route"
    for view in routes:
        actions.action(view.action)
        assert view.action in relay._checks, f"{view.__name__}: nobody says who may act"


class _Unchecked(PublicApi, TypedDataApi):
    action = "RevokeNode"

    def act(self, actor: object, subject: object, data: dict) -> object:
        raise AssertionError("the service ran without a check of who acts")


def test_a_route_whose_action_nobody_checks_refuses_to_run():
    view = _Unchecked.as_view()
    with pytest.raises(LookupError, match="RevokeNode"):
        view(APIRequestFactory().post("/x", {}, format="json"))


def test_a_check_for_an_undeclared_action_is_refused_at_registration():
    with pytest.raises(KeyError, match="Nope"):
        relay.register_checks({"Nope": lambda viewer, subject: None})
    assert "Nope" not in relay._checks
