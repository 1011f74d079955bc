"""Apply → sponsor → vote → admitted, clicked through in Debian's chromium.

Every chain action is signed by the persona's injected EIP-1193 wallet (its key
held in Python, signing with eth-account); the portal runs in pytest-django's
live server against the in-process chain of the `consortium` fixture.
"""

from __future__ import annotations

import re
from base64 import b32decode
from typing import Any

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

APPLICANT_PASSWORD = "harbour-pass-2024"


def sign_in(page: Any, username: str, password: str, code: Any) -> None:
    """Password, then the authenticator code (`code()` is called when the form asks)."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    page.get_by_label("Six-digit code").fill(code())
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("member-status")).to_be_visible()


def test_a_hospital_applies_and_the_founders_admit_it(
    consortium, applicant_keys, browser_persona, browser_founder_admin, browser_totp
):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from portal.consortium.models import Member, Proposal

    # 1. The applicant fills the form; its wallet supplies the address and signs.
    applicant = browser_persona("applicant", applicant_keys.key)
    page = applicant.page
    page.goto("/apply/")
    page.get_by_label("Hospital name").fill(applicant_keys.name)
    page.get_by_label("Contact email").fill("admin@harbour.example")
    page.get_by_label("Role in the consortium").select_option(label="Hospital")
    page.get_by_role("button", name="Use my wallet's address").click()
    expect(page.get_by_label("Governance address")).to_have_value(applicant_keys.address)
    page.get_by_label("Data public key").fill(applicant_keys.data_key)
    page.get_by_label("Your username").fill("harbour-admin")
    page.get_by_label("Your password").fill(APPLICANT_PASSWORD)
    applicant.screenshot("admission-1-apply.png")
    page.get_by_role("button", name="Sign with wallet and apply").click()

    # Signed in as the hospital's new admin, who sets up the second factor from the QR page.
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().strip()
    applicant.screenshot("admission-2-two-factor-setup.png")
    page.get_by_label("Six-digit code").fill(f"{TOTP(b32decode(secret)).token():06d}")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page.get_by_test_id("member-status")).to_contain_text("Applied, awaiting a sponsor")
    assert len(applicant.signed) == 1
    assert Member.objects.get(governance_address=applicant_keys.address).status == "applied"

    # 2. A founder's admin signs in (password + TOTP) and sponsors with its wallet.
    mary_user, mary_device = browser_founder_admin(0, "mary-admin")
    mary = browser_persona("mary", consortium[0].key)
    sign_in(mary.page, "mary-admin", "mary-admin-pass-2024", lambda: browser_totp(mary_device))
    mary.page.get_by_role("link", name="Members").click()
    mary.page.get_by_role("link", name=f"Review and sponsor {applicant_keys.name}").click()
    mary.page.get_by_role("button", name=f"Sponsor {applicant_keys.name}").click()
    expect(mary.page.locator(".messages")).to_contain_text(f"You sponsored {applicant_keys.name}")
    proposal = Proposal.objects.get(subject__governance_address=applicant_keys.address)
    number = proposal.chain_proposal_id
    expect(mary.page).to_have_url(re.compile(rf"/proposals/{number}/$"))

    # 3. Two founders' admins vote yes, each with its own wallet.
    mary.page.get_by_role("button", name="Vote yes", exact=True).click()
    expect(mary.page.locator(".messages")).to_contain_text(f"Your yes vote on #{number}")
    expect(mary.page.get_by_test_id("tally-yes")).to_have_text("1")

    city_user, city_device = browser_founder_admin(1, "city-admin")
    city = browser_persona("city", consortium[1].key)
    sign_in(city.page, "city-admin", "city-admin-pass-2024", lambda: browser_totp(city_device))
    city.page.get_by_role("link", name="Proposals").click()
    city.page.get_by_role("link", name=f"#{number} Admission").click()
    city.page.get_by_role("button", name="Vote yes", exact=True).click()
    expect(city.page.locator(".messages")).to_contain_text("It is accepted")
    expect(city.page.get_by_test_id("proposal-status")).to_contain_text("Accepted")
    city.screenshot("admission-3-proposal-accepted.png")

    assert len(mary.signed) == 2  # the sponsorship and the vote
    assert len(city.signed) == 1

    # 4. The applicant signs in again and is an active member.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    device = TOTPDevice.objects.get(user__username="harbour-admin")
    sign_in(page, "harbour-admin", APPLICANT_PASSWORD, lambda: browser_totp(device))
    expect(page.get_by_test_id("member-status")).to_contain_text("Active member")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Proposals")
    applicant.screenshot("admission-4-applicant-active.png")

    member = Member.objects.get(governance_address=applicant_keys.address)
    assert member.status == Member.Status.ACTIVE
    proposal.refresh_from_db()
    assert (proposal.status, proposal.yes, proposal.no) == (Proposal.Status.ACCEPTED, 2, 0)
    for persona in (applicant, mary, city):
        assert persona.errors == [], f"{persona.name}: script errors {persona.errors}"


def test_it_says_so_when_there_is_no_wallet(consortium, browser_chromium, live_server):
    context = browser_chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto("/apply/")
    status = page.get_by_test_id("wallet-status")
    expect(status).to_have_count(1)
    expect(status).to_contain_text("No browser wallet found")
    page.get_by_label("Hospital name").fill("Nowallet Clinic")
    page.get_by_label("Contact email").fill("a@nowallet.example")
    page.get_by_label("Governance address").fill("0x" + "11" * 20)
    page.get_by_label("Data public key").fill("0x" + "22" * 32)
    page.get_by_label("Your username").fill("nowallet-admin")
    page.get_by_label("Your password").fill("nowallet-pass-2024")
    # The button that cannot work is disabled, and says why.
    apply = page.get_by_role("button", name="Sign with wallet and apply")
    expect(apply).to_be_disabled()
    expect(apply).to_have_attribute("title", re.compile("No browser wallet found"))
    expect(page.get_by_role("button", name="Use my wallet's address")).to_be_disabled()
    expect(page).to_have_url(re.compile(r"/apply/$"))
    context.close()
