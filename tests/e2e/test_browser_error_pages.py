"""The error pages a person meets with DEBUG off (as in the demo): 400, 403, the CSRF
failure, 404 and 500 are the portal's own page, branded, saying what happened and what to
do, with a way back, and they fit a phone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_phone import PHONE, page_width

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

GOVERNOR_PASSWORD = "governor-pass-2024"


def _context(browser: Any, base_url: str, **options: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The refused document itself is reported as a failed load; anything else is a fault.
    page.on(
        "console",
        lambda m: None
        if m.type != "error"
        or (m.text.startswith("Failed to load resource") and m.location["url"] == page.url)
        else errors.append(f"{m.text} {m.location}"),
    )
    return context, page, errors


def _expect_error_page(page: Any, code: int, heading: str) -> None:
    card = page.get_by_test_id("error-page")
    expect(card).to_contain_text(f"Error {code}")
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.locator(".site-header a.brand")).to_have_text(re.compile("^MedChain"))
    expect(page.locator("link[rel=stylesheet]")).to_have_attribute("href", "/static/css/portal.css")
    assert "Traceback" not in page.content()
    assert page_width(page) <= page.viewport_size["width"]


def test_a_visitor_meets_branded_error_pages_and_finds_the_way_back(
    db, browser_chromium, live_server, settings, caplog
):
    settings.DEBUG = False
    context, page, errors = _context(browser_chromium, live_server.url, **PHONE)

    # A stale link: the portal's 404, and back to the portal (its sign-in page).
    response = page.goto("/proposals/not-a-number/")
    assert response.status == 404
    _expect_error_page(page, 404, "Page not found")
    expect(page.get_by_test_id("error-page")).to_contain_text("/proposals/not-a-number/")
    page.get_by_role("link", name="Back to the dashboard").click()
    expect(page.get_by_role("heading", name="Already on a member's staff?")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # The sign-in form sent after its cookie is gone (signed out in another tab): the CSRF page.
    context.clear_cookies()
    page.get_by_label("Username").fill("someone")
    page.get_by_label("Password").fill("whatever-it-is")
    page.get_by_role("button", name="Sign in").click()
    _expect_error_page(page, 403, "This form has expired")
    expect(page.get_by_test_id("error-page")).to_contain_text(
        "reload the page and send the form again"
    )
    page.go_back()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # A fault in a view: the portal's 500, no traceback.
    settings.ROOT_URLCONF = "tests.e2e.crash_urls"
    response = page.goto("/fails/")
    assert response.status == 500
    _expect_error_page(page, 500, "Something went wrong")

    # Reached under a name the portal does not serve: the portal's 400.
    settings.ALLOWED_HOSTS = ["portal.example"]
    response = page.goto("/")
    assert response.status == 400
    _expect_error_page(page, 400, "Request refused")
    assert errors == [], errors
    context.close()


def test_the_governor_is_told_why_the_catalogue_is_not_for_it(
    db, browser_chromium, live_server, browser_totp, settings
):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from portal.consortium import services

    settings.DEBUG = False
    governor = services.governor_create(
        username="governor", password=GOVERNOR_PASSWORD, email="governor@consortium.example"
    )
    device = TOTPDevice.objects.create(user=governor, name="phone", confirmed=True)
    context, page, errors = _context(
        browser_chromium, live_server.url, viewport={"width": 1280, "height": 900}
    )
    governor_sign_in(page, lambda: browser_totp(device))

    response = page.goto("/datasets/")
    assert response.status == 403
    _expect_error_page(page, 403, "Not allowed")
    expect(page.get_by_test_id("error-reason")).to_have_text(
        "Only staff of an active consortium member can see the dataset catalogue."
    )
    page.set_viewport_size({"width": 390, "height": 844})
    assert page_width(page) <= 390
    page.get_by_role("link", name="Back to the dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    assert errors == [], errors
    context.close()


def governor_sign_in(page: Any, code: Any) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("governor")
    page.get_by_label("Password").fill(GOVERNOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    page.get_by_label("Six-digit code").fill(code())
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
