"""A hospital's admin reads a proposal to remove its own hospital: what the chain records,
the tally in words, short hashes it can copy whole, and a warning before it votes yes."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_admission import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_an_admin_reads_the_tally_of_its_own_removal_and_copies_a_vote_hash(
    consortium, browser_persona, browser_founder_admin, browser_totp
):
    from portal.consortium import services
    from portal.consortium.models import Member, Vote

    mary = Member.objects.get(governance_address=consortium[0].address)
    city = Member.objects.get(governance_address=consortium[1].address)
    proposal = services.removal_propose(proposer=city, member=mary)
    services.vote_cast(voter=city, proposal=proposal, support=True)
    city_vote = Vote.objects.get(proposal=proposal, voter=city)

    user, device = browser_founder_admin(0, "mary-facts-admin")
    admin = browser_persona("mary-admin", consortium[0].key)
    page: Any = admin.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, user.get_username(), "mary-facts-admin-pass-2024", lambda: browser_totp(device))

    page.get_by_role("link", name="Proposals", exact=True).click()
    expect(page.get_by_test_id("chain-records")).to_contain_text("On chain:")
    row = page.get_by_role("row").filter(has_text=f"#{proposal.chain_proposal_id} Removal")
    expect(row).to_contain_text("1 yes · 0 no")
    expect(row).to_contain_text("2 of 3 needed")
    row.get_by_role("link").click()

    # What the chain records, and the tally in the contract's terms.
    expect(page.get_by_test_id("chain-records")).to_contain_text("every vote and the outcome")
    tally = page.get_by_test_id("tally-text")
    expect(tally.nth(0)).to_have_text(
        "2 of 3 needed: more than half of the 3 hospitals at opening."
    )
    expect(tally.nth(1)).to_have_text(
        "So far 1 yes and 0 no: 1 more yes passes it; 2 more no votes reject it."
    )
    # The admin is told the proposal is about its own hospital.
    expect(page.get_by_test_id("own-removal-vote")).to_contain_text(
        "This proposal would remove your own hospital, St. Mary's Hospital."
    )

    # City's vote transaction: shortened, whole on hover, copied whole.
    cell = page.get_by_role("row").filter(has_text="City General").locator(".hash")
    code = cell.locator("code")
    expect(code).to_have_text(f"{city_vote.tx_hash[:8]}…{city_vote.tx_hash[-4:]}")
    expect(code).to_have_attribute("title", city_vote.tx_hash)
    copy = cell.get_by_role("button", name="Copy transaction")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == city_vote.tx_hash
    admin.screenshot("chain-facts-own-removal.png")

    # Voting yes on its own removal asks first; cancelling signs nothing.
    page.get_by_role("button", name="Vote yes", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("You are voting yes on removing your own hospital")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert admin.signed == []

    # A no vote goes through without a question, and the sentence follows the count.
    page.get_by_role("button", name="Vote no", exact=True).click()
    expect(page.get_by_text("You voted no")).to_be_visible()
    expect(page.get_by_test_id("tally-text").nth(1)).to_have_text(
        "So far 1 yes and 1 no: 1 more yes passes it; 1 more no rejects it."
    )
    assert [t["primaryType"] for t in admin.signed] == ["Vote"]
    assert admin.errors == [], admin.errors
