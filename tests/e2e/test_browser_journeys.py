"""Issue 9's journeys, clicked through in Debian's chromium as the people who make them:

- a visitor learns what MedChain is and how a hospital joins, from the first page;
- an admin sees what needs them, invites a clinician, copies, resends and cancels invitations;
  the clinician accepts from the mailed link and lands on their own dashboard;
- a steward's dashboard is their hospital's data, never the governance wallet;
- an admin sets up the second factor, keeps the recovery codes, is told the true wait
  after a wrong code, and later signs in with a recovery code.
"""

from __future__ import annotations

import re
import time
from base64 import b32decode
from typing import Any

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import expect

from tests.e2e.test_browser_dataset import _sign_in_steward, _steward

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ADMIN_PASSWORD = "mary-admin-pass-2024"
CLINICIAN_PASSWORD = "mary-clinician-pass-2024"


def _page(browser: Any, live_server: Any) -> tuple[Any, list[str]]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A refused document's own failed load is its status, checked on its own.
    page.on(
        "console",
        lambda m: errors.append(m.text)
        if m.type == "error" and not m.text.startswith("Failed to load resource")
        else None,
    )
    return page, errors


def _link_in(body: str) -> str:
    found = re.search(r"https?://\S+/accounts/invitations/\S+/", body)
    assert found, body
    return found.group(0)


def test_a_visitor_learns_what_medchain_is_and_an_admin_brings_in_a_clinician(
    consortium, browser_chromium, live_server, browser_founder_admin, browser_totp
):
    from django.core import mail

    from portal.consortium.models import Invitation, Staff

    # The first page says what MedChain is and how a hospital joins, before any sign-in.
    visitor, errors = _page(browser_chromium, live_server)
    visitor.goto("/")
    expect(visitor.get_by_role("heading", level=1)).to_contain_text("MedChain")
    expect(visitor.get_by_role("heading", name="How a hospital joins")).to_be_visible()
    expect(visitor.get_by_text("3 members today")).to_be_visible()
    expect(visitor.get_by_role("link", name="Apply to join")).to_have_attribute("href", "/apply/")
    visitor.get_by_role("link", name="Sign in", exact=True).click()

    # Mary's admin signs in: the dashboard says what needs them, each empty part what to do.
    _user, device = browser_founder_admin(0, "mary-admin")
    visitor.get_by_label("Username").fill("mary-admin")
    visitor.get_by_label("Password").fill(ADMIN_PASSWORD)
    visitor.get_by_role("button", name="Sign in").click()
    visitor.get_by_label("Six-digit code").fill(browser_totp(device))
    visitor.get_by_role("button", name="Verify").click()
    admin = visitor
    expect(admin.get_by_test_id("your-role")).to_contain_text("St. Mary's Hospital's admin")
    expect(admin.get_by_test_id("nodes-offline")).to_contain_text("No training node yet")
    expect(admin.get_by_test_id("your-datasets")).to_contain_text("No dataset yet")
    expect(admin.get_by_text("Only you so far")).to_be_visible()
    admin.get_by_role("link", name="Manage staff and invitations").click()

    # Two invitations: each mailed, listed with its link to copy.
    for email, role in (("doc@mary.example", "Clinician"), ("late@mary.example", "Data steward")):
        admin.get_by_label("Email").fill(email)
        admin.get_by_label("Role").select_option(label=role)
        admin.get_by_role("button", name="Create and mail the invitation").click()
        expect(admin.locator(".messages")).to_contain_text(f"Invitation for {email} created")
    rows = admin.get_by_test_id("invitation")
    expect(rows).to_have_count(2)
    assert [m.to for m in mail.outbox] == [["doc@mary.example"], ["late@mary.example"]]
    late = rows.filter(has_text="late@mary.example")
    late.get_by_role("button", name="Copy the link for late@mary.example").click()
    expect(late.get_by_role("button", name=re.compile("Copied|Press Ctrl\\+C"))).to_be_visible()
    late.get_by_role("button", name="Resend to late@mary.example").click()
    expect(admin.locator(".messages")).to_contain_text("mailed again to late@mary.example")
    assert len(mail.outbox) == 3 and _link_in(mail.outbox[2].body) == _link_in(mail.outbox[1].body)
    rows.filter(has_text="late@mary.example").get_by_role(
        "button", name="Cancel the invitation for late@mary.example"
    ).click()
    dialog = admin.get_by_role("dialog")
    expect(dialog).to_contain_text("stops working at once")
    dialog.get_by_role("button", name="Cancel the invitation").click()
    expect(admin.locator(".messages")).to_contain_text("is cancelled")
    expect(rows).to_have_count(1)
    assert not Invitation.objects.get(email="late@mary.example").is_open

    # The clinician follows the mailed link, and lands on a dashboard of their own.
    clinician, clinician_errors = _page(browser_chromium, live_server)
    clinician.goto(_link_in(mail.outbox[0].body))
    clinician.get_by_label("Choose a username").fill("mary-doc")
    clinician.get_by_label("Choose a password").fill(CLINICIAN_PASSWORD)
    clinician.get_by_role("button", name=re.compile("Join|Accept|Create")).click()
    expect(clinician.get_by_test_id("your-role")).to_contain_text("clinician")
    expect(clinician.get_by_test_id("diagnosis")).to_contain_text("not open yet")
    expect(clinician.get_by_test_id("nodes-offline")).to_have_count(0)
    expect(clinician.get_by_text("governance wallet")).to_have_count(0)
    assert Staff.objects.get(user__username="mary-doc").role == Staff.Role.CLINICIAN
    # A cancelled link says so in words.
    clinician.goto(_link_in(mail.outbox[1].body))
    expect(clinician.locator(".messages")).to_contain_text("unknown, used or expired")
    assert errors == [] and clinician_errors == [], errors + clinician_errors


def test_a_stewards_first_page_is_their_hospitals_data(consortium, browser_chromium, live_server):
    from portal.consortium.models import Member

    mary = Member.objects.get(governance_address=consortium[0].address)
    _steward(mary)
    page, errors = _page(browser_chromium, live_server)
    _sign_in_steward(page, "/")
    expect(page.get_by_test_id("your-role")).to_contain_text("St. Mary's Hospital's data steward")
    datasets = page.get_by_test_id("your-datasets")
    expect(datasets).to_contain_text("No dataset yet. Upload the first")
    expect(page.get_by_text("No node may read your data yet")).to_be_visible()
    # The hospital's governance address is the admin's wallet, not shown as the steward's.
    assert consortium[0].address.lower() not in page.content().lower()
    expect(page.get_by_role("heading", name="Open proposals")).to_have_count(0)
    datasets.get_by_role("link", name="Upload a dataset").click()
    expect(page.get_by_role("heading", name="Upload a dataset")).to_be_visible()
    assert errors == [], errors


def test_an_admin_keeps_recovery_codes_and_is_told_the_true_wait(
    consortium, browser_chromium, live_server
):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from portal.consortium import services
    from portal.consortium.models import Member, Staff

    services.staff_create(
        member=Member.objects.get(governance_address=consortium[0].address),
        username="mary-admin",
        password=ADMIN_PASSWORD,
        email="admin@mary.example",
        role=Staff.Role.ADMIN,
    )
    page, errors = _page(browser_chromium, live_server)

    def password() -> None:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("mary-admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()

    def code(step_ahead: int = 0) -> str:
        totp = TOTP(key, drift=step_ahead)
        return f"{totp.token():06d}"

    # First sign-in: the app is set up from the secret, then the codes are shown once.
    password()
    key = b32decode(page.locator("#totp-secret").inner_text().strip())
    page.get_by_label("Six-digit code").fill(code())
    page.get_by_role("button", name="Verify").click()
    shown = page.get_by_test_id("recovery-codes").locator("code")
    expect(shown).to_have_count(10)
    codes = shown.all_inner_texts()
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page.get_by_test_id("member-status")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    # A wrong code, then the right one at once: refused with the true wait, then accepted.
    password()
    page.get_by_label("Six-digit code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".messages")).to_contain_text("That code is not valid")
    page.get_by_label("Six-digit code").fill(code(1))  # the next step: never the one used
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".messages")).to_contain_text(re.compile(r"wait [12] seconds?,"))
    assert "minute" not in page.locator(".messages").inner_text()
    time.sleep(2)
    page.get_by_label("Six-digit code").fill(code(1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("member-status")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    # The phone is lost: a recovery code signs in, once.
    password()
    page.get_by_label("Six-digit code").fill(codes[3])
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".messages")).to_contain_text("Signed in with a recovery code; 9 remain")
    expect(page.get_by_test_id("member-status")).to_be_visible()
    assert TOTPDevice.objects.get(user__username="mary-admin").confirmed
    assert errors == [], errors
