"""Pages with DEBUG off (as in the demo): the portal's own 404 and 500, and static files
served by WhiteNoise rather than by Django's DEBUG-only handler."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

pytestmark = pytest.mark.django_db


def test_it_answers_an_unknown_page_with_the_portals_404(client, settings):
    settings.DEBUG = False
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content and b"/no-such-page/" in response.content
    assert b"URLconf" not in response.content


def test_it_renders_the_portals_500_without_a_request_context():
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content and b"MedChain" in response.content


def test_it_serves_static_files_without_debug(client, settings):
    settings.DEBUG = False
    response = client.get("/static/css/portal.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
