"""An admin removing a colleague is asked first, in a dialog that names the consequence."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_admission import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_an_admin_is_asked_before_removing_a_colleague(
    consortium, browser_persona, browser_founder_admin, browser_totp
):
    from portal.consortium import services
    from portal.consortium.models import Member, Staff

    mary = Member.objects.get(governance_address=consortium[0].address)
    colleague = services.staff_create(
        member=mary, username="mary-doc", password=None, email="doc@mary.example", role="clinician"
    )
    user, device = browser_founder_admin(0, "mary-confirm-admin")
    admin = browser_persona("mary-admin", consortium[0].key)
    page: Any = admin.page
    sign_in(page, user.get_username(), "mary-confirm-admin-pass-2024", lambda: browser_totp(device))
    page.goto("/staff/")

    remove = page.get_by_role("button", name="Remove mary-doc")
    remove.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("mary-doc (clinician) loses access to St. Mary's Hospital")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert Staff.objects.filter(pk=colleague.pk).exists()

    remove.click()
    dialog.get_by_role("button", name="Remove mary-doc").click()
    expect(page.locator(".messages")).to_contain_text("mary-doc is removed.")
    assert not Staff.objects.filter(pk=colleague.pk).exists()
    assert admin.errors == [], admin.errors
