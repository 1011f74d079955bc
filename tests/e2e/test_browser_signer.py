"""One wallet status and one choice of signer per page; one button per choice, disabled with
the reason when the chosen signer cannot sign."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_admission import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

VOTE_BUTTONS = re.compile(r"^Vote (yes|no)$")


def _open_proposal_page(page: Any, number: int) -> None:
    page.get_by_role("link", name="Proposals", exact=True).click()
    page.get_by_role("link", name=f"#{number} Removal").click()
    expect(page.get_by_role("heading", name="Your vote")).to_be_visible()


def test_without_a_wallet_an_admin_votes_with_the_demo_keystore(
    consortium, browser_chromium, live_server, browser_founder_admin, browser_totp
):
    from portal.consortium import services
    from portal.consortium.models import Member, Vote

    mary = Member.objects.get(governance_address=consortium[0].address)
    city = Member.objects.get(governance_address=consortium[1].address)
    north = Member.objects.get(governance_address=consortium[2].address)
    proposal = services.removal_propose(proposer=city, member=north)

    user, device = browser_founder_admin(0, "mary-signer-admin")
    context = browser_chromium.new_context(base_url=live_server.url)  # no wallet injected
    page: Any = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, user.get_username(), "mary-signer-admin-pass-2024", lambda: browser_totp(device))
    _open_proposal_page(page, proposal.chain_proposal_id)

    status = page.get_by_test_id("wallet-status")
    expect(status).to_have_count(1)
    votes = page.get_by_role("button", name=VOTE_BUTTONS)
    expect(votes).to_have_count(2)
    # With no wallet the demo portal starts on its keystore, as the upload page does.
    demo = page.get_by_role("radio", name=re.compile("The demo keystore"))
    wallet = page.get_by_role("radio", name="Your browser wallet")
    expect(demo).to_be_checked()
    expect(status).to_contain_text("Signing with the demo keystore")

    # Choosing the wallet that is not there disables both buttons, and the page says why.
    wallet.check()
    expect(status).to_have_text("No browser wallet found: install one, or use the demo keystore.")
    for i in range(2):
        expect(votes.nth(i)).to_be_disabled()
        expect(votes.nth(i)).to_have_attribute("title", re.compile("No browser wallet found"))

    demo.check()
    expect(votes.nth(0)).to_be_enabled()
    page.get_by_role("button", name="Vote yes", exact=True).click()
    expect(page.locator(".messages")).to_contain_text(
        f"Your yes vote on #{proposal.chain_proposal_id}"
    )
    expect(page.get_by_test_id("tally-yes")).to_have_text("1")
    assert Vote.objects.get(proposal=proposal, voter=mary).support is True
    assert errors == [], errors
    context.close()


def test_a_wallet_on_another_account_is_named_and_its_buttons_wait(
    consortium, browser_persona, browser_founder_admin, browser_totp
):
    from portal.consortium import services
    from portal.consortium.models import Member, Vote

    city = Member.objects.get(governance_address=consortium[1].address)
    north = Member.objects.get(governance_address=consortium[2].address)
    proposal = services.removal_propose(proposer=north, member=city)

    user, device = browser_founder_admin(0, "mary-other-admin")
    admin = browser_persona("mary-other", consortium[1].key)  # City's key, not Mary's
    page: Any = admin.page
    sign_in(page, user.get_username(), "mary-other-admin-pass-2024", lambda: browser_totp(device))
    _open_proposal_page(page, proposal.chain_proposal_id)

    status = page.get_by_test_id("wallet-status")
    expect(status).to_have_count(1)
    expect(page.get_by_role("radio", name="Your browser wallet")).to_be_checked()
    expect(status).to_contain_text(f"Wallet: {consortium[1].address[:6]}")
    expect(status).to_contain_text("is not St. Mary's Hospital's governance key")
    votes = page.get_by_role("button", name=VOTE_BUTTONS)
    expect(votes).to_have_count(2)
    for i in range(2):
        expect(votes.nth(i)).to_be_disabled()
    admin.screenshot("signer-other-account.png")

    page.get_by_role("radio", name=re.compile("The demo keystore")).check()
    page.get_by_role("button", name="Vote no", exact=True).click()
    expect(page.get_by_text("You voted no")).to_be_visible()
    mary = Member.objects.get(governance_address=consortium[0].address)
    assert Vote.objects.get(proposal=proposal, voter=mary).support is False
    assert admin.signed == [] and admin.errors == [], admin.errors
