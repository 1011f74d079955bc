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


def test_every_error_page_is_the_portals_own(client, settings, django_user_model):
    """400 (a Host the portal does not serve), 403 with its reason, the CSRF failure, 404 and
    500 share one branded frame: the portal's header, stylesheet and a way back."""
    from django.test import Client

    settings.DEBUG = False
    pages = {
        400: Client().get("/", HTTP_HOST="elsewhere.example"),
        404: client.get("/no-such-page/"),
        500: server_error(RequestFactory().get("/")),
    }
    outsider = django_user_model.objects.create_user("outsider", password="outsider-pass-2024")
    signed_in = Client()
    signed_in.force_login(outsider)
    pages[403] = signed_in.get("/datasets/")
    csrf = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "x"})
    for code, response in [*pages.items(), ("403 (CSRF)", csrf)]:
        html = response.content.decode()
        assert response.status_code == int(str(code)[:3]), code
        assert 'data-testid="error-page"' in html and f"Error {str(code)[:3]}" in html, code
        assert "/static/css/portal.css" in html and "Back to the dashboard" in html, code
    assert "Only staff of an active consortium member" in pages[403].content.decode()
    assert "This form has expired" in csrf.content.decode()
