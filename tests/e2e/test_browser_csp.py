"""Every page of the portal loads under its Content-Security-Policy with no violation.

The pages are enumerated from the URL resolver, so a page added later is walked too
(a new path parameter fails here until the test knows an object for it). A member's
admin, signed in with the second factor, opens each one in Debian's chromium; the
persona records every violation Chromium reports.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_admission import sign_in
from tests.e2e.test_browser_dataset_owner import _owner_page_setup
from tests.routes import fill, routes

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

# Routes that answer JSON or end a session, not pages a person reads.
NOT_PAGES = ("api/v1/", "admin/", "accounts/logout/", "api/schema/", "health", "^api/")


def _pages(objects: dict[str, str]) -> list[str]:
    pages = []
    for route, _ in routes():
        if not route.startswith(NOT_PAGES) and "typed-data" not in route:
            pages.append(fill(route, lambda converter, name: objects.get(name)))
    return sorted(set(pages))


def test_every_page_loads_under_the_csp_without_a_violation(
    consortium, datasets_chain, applicant, browser_persona, browser_founder_admin, browser_totp,
    tmp_path,
):  # fmt: skip
    from portal.consortium import services
    from portal.consortium.models import Invitation, Member, Staff

    dataset, own, _ = _owner_page_setup(consortium, tmp_path)
    mary = Member.objects.get(governance_address=consortium[0].address)
    proposal = services.admission_sponsor(sponsor=mary, applicant=applicant)
    invitation = Invitation.objects.create(
        member=mary, email="new@mary.example", role=Staff.Role.CLINICIAN
    )
    user, device = browser_founder_admin(0, "mary-csp-admin")
    objects = {
        "pk": str(applicant.pk),
        "number": str(proposal.chain_proposal_id),
        "node_id": own.node_id,
        "dataset_id": str(dataset.pk),
        "token": invitation.token,
    }
    pages = _pages(objects)
    assert {"/", "/datasets/upload/", "/api/docs/"} <= set(pages)

    persona = browser_persona("mary-admin", consortium[0].key)
    page: Any = persona.page
    sign_in(page, user.get_username(), "mary-csp-admin-pass-2024", lambda: browser_totp(device))
    statuses = {}
    violations: dict[str, list[str]] = {}
    for path in pages:
        seen = len(persona.errors)
        if page.request.get(path).status == 405:
            continue  # a form's target (POST only), shown on another page
        response = page.goto(path, wait_until="networkidle")
        statuses[path] = response.status if response else None
        expect(page.locator("body")).not_to_be_empty()
        if len(persona.errors) > seen:
            violations[path] = persona.errors[seen:]

    assert violations == {}, {path: [f[:160] for f in found] for path, found in violations.items()}
    assert all(status is not None and status < 500 for status in statuses.values()), statuses
