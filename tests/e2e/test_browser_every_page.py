"""Every page, as each persona would see it, at 1280 px and on a 390 px phone.

The pages are the URL resolver's GET routes that answer HTML (not the API, the admin or
a typed-data endpoint), with path parameters filled from seeded objects, so a page added
later is walked too; a new path parameter fails here until the test knows an object for
it. Each persona (anonymous, a hospital's admin, its data steward, the consortium's
governor) opens each page at 1280 px, then narrows the same window to 390 px, and a page
fails if it is wider than the screen at either width, shows a debug page, a server error
or an unbranded refusal, logs a console error, or does not say what the chain records.
One load per page and persona: a second load at the phone's width would show the same
answer; tests/e2e/test_browser_phone.py walks the main pages on an emulated phone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.e2e.test_browser_admission import sign_in
from tests.e2e.test_browser_dataset import _sign_in_steward
from tests.e2e.test_browser_dataset_owner import _owner_page_setup
from tests.e2e.test_browser_error_pages import GOVERNOR_PASSWORD, governor_sign_in
from tests.e2e.test_browser_phone import PHONE, overflowing, page_width
from tests.routes import fill, routes

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ADMIN_PASSWORD = "mary-pages-admin-pass-2024"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
WIDTHS = (1280, PHONE["viewport"]["width"])
# Routes that answer JSON, end a session or belong to Django's admin, not pages of the portal.
NOT_PAGES = ("api/v1/", "admin/", "accounts/logout/", "api/schema/", "health", "^api/")
# Pages that are not the portal's own frame (Swagger UI), so carry no chain line.
FOREIGN_PAGES = ("/api/docs/",)
# Django's words on its debug pages (technical 404 and 500).
DEBUG_MARKS = ("seeing this error because you have", "Traceback", "Request Method:")


def pages(objects: dict[str, str], by_route: dict[str, dict[str, str]]) -> list[str]:
    """The page paths: `by_route[url name][param]`, else `objects[param]`, fills a parameter."""
    found = []
    for route, pattern in routes():
        if route.startswith(NOT_PAGES) or "typed-data" in route:
            continue
        own = by_route.get(pattern.name or "", {})
        found.append(fill(route, lambda _, param, own=own: own.get(param, objects.get(param))))
    return sorted(set(found))


def _watch(page: Any) -> list[str]:
    """Console errors and uncaught exceptions; a refused document's own failed load is the
    page's status, checked on its own."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: None
        if m.type != "error"
        or (m.text.startswith("Failed to load resource") and m.location["url"] == page.url)
        else errors.append(f"{m.text} {m.location}"),
    )
    return errors


def steward_sign_in(page: Any) -> None:
    _sign_in_steward(page, "/")
    expect(page.get_by_test_id("member-status")).to_be_visible()


def _retry(page: Any, path: str, errors: list[str], seen: int, tries: int = 3) -> Any:
    """``page.goto(path)`` again after a dropped connection; the last failure propagates."""
    for attempt in range(tries):
        page.wait_for_timeout(500 * (attempt + 1))
        del errors[seen:]
        try:
            return page.goto(path, wait_until="networkidle")
        except PlaywrightError:
            if attempt == tries - 1:
                raise
    return None


def _check(page: Any, path: str, errors: list[str]) -> list[str] | None:
    """What is wrong with `path` as this page shows it, at each of WIDTHS (nothing: [];
    None: not a page)."""
    seen = len(errors)
    try:
        response = page.goto(path, wait_until="networkidle")
    except PlaywrightError:
        # Chromium refuses to show an empty error answer: a form's target (POST only, 405),
        # shown on another page, is no page of its own.
        if page.request.get(path).status == 405:
            del errors[seen:]
            return None
        # Under load the live server's thread can drop a connection. Chromium then shows its
        # own error page and reloads it by itself, which can interrupt the next goto: a few
        # more tries, a moment apart, tell that apart from a page that is broken.
        response = _retry(page, path, errors, seen)
    problems = []
    status = response.status if response else None
    html = page.content()
    if status is None or status >= 500:
        problems.append(f"status {status}")
    if any(mark in html for mark in DEBUG_MARKS):
        problems.append("a debug page")
    if status is not None and status >= 400 and 'data-testid="error-page"' not in html:
        problems.append(f"status {status} without the portal's error page")
    if status == 200 and path not in FOREIGN_PAGES and 'data-testid="chain-records"' not in html:
        problems.append(f"no line on what the chain records ({page.url})")
    problems += errors[seen:]
    found = [f"{path}: {p}" for p in problems]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": DESKTOP["viewport"]["height"]})
        if page_width(page) > width:
            found.append(f"{path} at {width} px: {page_width(page)} px wide: "
                         f"{overflowing(page, width)}")  # fmt: skip
    page.set_viewport_size(DESKTOP["viewport"])
    return found


def test_every_page_fits_desktop_and_phone_for_every_persona(
    consortium, datasets_chain, applicant, browser_chromium, live_server, browser_founder_admin,
    browser_totp, tmp_path,
):  # fmt: skip
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from portal.consortium import services
    from portal.consortium.models import Invitation, Member, Staff

    dataset, own, _ = _owner_page_setup(consortium, tmp_path)  # and St. Mary's steward
    mary = Member.objects.get(governance_address=consortium[0].address)
    city = Member.objects.get(governance_address=consortium[1].address)
    admission = services.admission_sponsor(sponsor=mary, applicant=applicant)
    services.vote_cast(voter=city, proposal=admission, support=True)
    invitation = Invitation.objects.create(
        member=mary, email="new@mary.example", role=Staff.Role.CLINICIAN
    )
    admin, admin_device = browser_founder_admin(0, "mary-pages-admin")
    governor = services.governor_create(
        username="governor", password=GOVERNOR_PASSWORD, email="governor@consortium.example"
    )
    governor_device = TOTPDevice.objects.create(user=governor, name="phone", confirmed=True)

    paths = pages(
        {
            "pk": str(applicant.pk),
            "number": str(admission.chain_proposal_id),
            "node_id": own.node_id,
            "dataset_id": str(dataset.pk),
            "token": invitation.token,
        },
        # Removal and rotation are proposed for an active member, sponsoring for an applicant.
        {"removal": {"pk": str(city.pk)}, "rotation": {"pk": str(mary.pk)}},
    )
    assert {"/", "/members/", "/datasets/", f"/datasets/{dataset.pk}/"} <= set(paths)
    paths.append("/no-such-page/")  # the 404 page, as each persona meets it

    personas: dict[str, Callable[[Any], None]] = {
        "anonymous": lambda page: None,
        "hospital admin": lambda page: sign_in(
            page, admin.get_username(), ADMIN_PASSWORD, lambda: browser_totp(admin_device)
        ),
        "data steward": steward_sign_in,
        "governor": lambda page: governor_sign_in(page, lambda: browser_totp(governor_device)),
    }
    problems: list[str] = []
    shown: dict[str, int] = {}
    for persona, sign_in_as in personas.items():
        context = browser_chromium.new_context(base_url=live_server.url, **DESKTOP)
        context.set_default_timeout(20_000)
        page = context.new_page()
        sign_in_as(page)
        errors = _watch(page)
        for path in paths:
            found = _check(page, path, errors)
            if found is not None:
                shown[persona] = shown.get(persona, 0) + 1
                problems += [f"{persona}: {p}" for p in found]
        context.close()
    assert problems == [], "\n".join(problems)
    # Every persona saw every page, but (signed in) the two POST-only targets: the node
    # token's and the upload page's demo UID secret.
    assert all(shown[persona] >= len(paths) - 2 for persona in personas), shown
