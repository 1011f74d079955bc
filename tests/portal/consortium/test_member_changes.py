"""Proposing a member's removal or a new governance address from the pages, on the
in-process chain; the members then vote it through and the mirror follows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from eth_account import Account

from portal.consortium import services
from portal.consortium.models import Member, Proposal
from tests.factories import messages_of, signed_in

NEW_KEY = "0x" + (0x4000).to_bytes(32, "big").hex()
NEW_ADDRESS = Account.from_key(NEW_KEY).address


def _founder(consortium: Any, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


def _wallet_sign(client: Any, url: str, key: str, **fields: str) -> str:
    """Fetch the typed data as the browser does and sign exactly that JSON."""
    answer = client.post(url, fields)
    assert answer.status_code == 200, answer.content
    typed = json.loads(json.dumps(answer.json()["typed"]))
    return "0x" + bytes(Account.sign_typed_data(key, full_message=typed).signature).hex()


@pytest.fixture
def admin_client(member_admin):
    return signed_in(member_admin)


@pytest.fixture
def northside(consortium) -> Member:
    return _founder(consortium, 2)


@pytest.fixture
def removal_open(consortium, northside) -> Proposal:
    """St. Mary's proposal to remove Northside Clinic."""
    return services.removal_propose(proposer=_founder(consortium, 0), member=northside)


def _new_routes(member: Member) -> list[str]:
    return [
        reverse("removal", args=[member.pk]),
        reverse("removal_typed_data", args=[member.pk]),
        reverse("rotation", args=[member.pk]),
        reverse("rotation_typed_data", args=[member.pk]),
    ]


# --- The members page ----------------------------------------------------------------------


def test_it_offers_removal_and_rotation_to_an_admin(admin_client, northside):
    body = admin_client.get(reverse("members")).content.decode()

    assert reverse("removal", args=[northside.pk]) in body
    assert reverse("rotation", args=[northside.pk]) in body
    for url in (reverse("removal", args=[northside.pk]), reverse("rotation", args=[northside.pk])):
        page = admin_client.get(url).content.decode()
        assert "data-wallet-sign" in page
        assert page.count('name="signer" value="demo"') == 1


def test_the_header_names_the_viewers_own_hospital_on_another_members_pages(
    admin_client, consortium, northside
):
    own = _founder(consortium, 0)
    for name in ("removal", "rotation"):
        page = admin_client.get(reverse(name, args=[northside.pk])).content.decode()
        header = page.split("<header")[1].split("</header>")[0]

        assert f"mary-admin · {escape(own.name)}" in header
        assert escape(northside.name) not in header
        assert escape(northside.name) in page.split('<main id="main"')[1]


def test_proposing_to_remove_ones_own_hospital_asks_first(admin_client, consortium, northside):
    own = admin_client.get(reverse("removal", args=[_founder(consortium, 0).pk])).content.decode()
    other = admin_client.get(reverse("removal", args=[northside.pk])).content.decode()

    assert 'data-testid="own-removal"' in own and "your own hospital" in own
    assert "data-confirm=" in own and "/static/js/confirm.js" in own
    assert "data-confirm=" not in other and "your own hospital" not in other


def test_it_offers_no_change_to_a_clinician(clinician, northside):
    client = signed_in(clinician)

    body = client.get(reverse("members")).content.decode()

    assert reverse("removal", args=[northside.pk]) not in body
    assert "Only the admin" in client.get(reverse("removal", args=[northside.pk])).content.decode()


def test_it_links_the_pending_change_instead_of_offering_another(admin_client, removal_open):
    body = admin_client.get(reverse("members")).content.decode()

    assert reverse("proposal", args=[removal_open.chain_proposal_id]) in body
    assert reverse("removal", args=[removal_open.subject.pk]) not in body


# --- Removal -------------------------------------------------------------------------------


def test_an_admin_proposes_a_removal_with_the_demo_keystore_and_members_vote_it_through(
    admin_client, consortium, northside, second_admin
):
    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True
    )

    proposal = Proposal.objects.get(subject=northside)
    assert response.redirect_chain[-1][0] == reverse("proposal", args=[proposal.chain_proposal_id])
    assert "You proposed removing Northside Clinic" in " ".join(messages_of(response))
    assert proposal.kind == Proposal.Kind.REMOVAL
    assert proposal.sponsor == _founder(consortium, 0)
    assert proposal.status == Proposal.Status.OPEN
    for i in (0, 1):
        proposal = services.vote_cast(
            voter=_founder(consortium, i), proposal=proposal, support=True
        )
    assert proposal.status == Proposal.Status.ACCEPTED
    northside.refresh_from_db()
    assert northside.status == Member.Status.REMOVED


def test_an_admin_proposes_a_removal_with_a_wallet_signature(admin_client, consortium, northside):
    typed_url = reverse("removal_typed_data", args=[northside.pk])
    assert admin_client.post(typed_url).json()["signer"] == consortium[0].address
    signature = _wallet_sign(admin_client, typed_url, consortium[0].key)

    response = admin_client.post(reverse("removal", args=[northside.pk]), {"signature": signature})

    proposal = Proposal.objects.get(subject=northside, kind=Proposal.Kind.REMOVAL)
    assert response["Location"] == reverse("proposal", args=[proposal.chain_proposal_id])


def test_a_wallet_signature_by_someone_else_is_refused_on_the_page(
    admin_client, consortium, northside
):
    typed_url = reverse("removal_typed_data", args=[northside.pk])
    signature = _wallet_sign(admin_client, typed_url, consortium[1].key)

    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"signature": signature}, follow=True
    )

    assert "not by St. Mary" in " ".join(messages_of(response))
    assert not Proposal.objects.exists()


def test_a_second_removal_while_one_is_pending_is_refused(admin_client, removal_open, northside):
    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True
    )

    assert response.status_code == 200
    assert (
        f"Northside Clinic already has a removal proposal open (#{removal_open.chain_proposal_id})"
        in " ".join(messages_of(response))
    )
    typed = admin_client.post(reverse("removal_typed_data", args=[northside.pk]))
    assert typed.status_code == 400
    assert "already has a removal proposal open" in typed.json()["error"]
    assert Proposal.objects.count() == 1


def test_a_removed_member_cannot_be_removed_again(admin_client, consortium, northside):
    proposal = services.removal_propose(proposer=_founder(consortium, 0), member=northside)
    for i in (0, 1):
        services.vote_cast(voter=_founder(consortium, i), proposal=proposal, support=True)

    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True
    )

    assert "Northside Clinic is not an active member (removed)" in " ".join(messages_of(response))


def test_a_clinician_cannot_propose_a_removal(clinician, northside):
    client = signed_in(clinician)

    response = client.post(reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True)

    assert "only the admin of an active member hospital" in " ".join(messages_of(response))
    assert client.post(reverse("removal_typed_data", args=[northside.pk])).status_code == 403
    assert not Proposal.objects.exists()


def test_a_chain_refusal_is_a_message_not_a_traceback(admin_client, consortium, northside):
    """Northside proposes its own rotation straight on chain, unseen by the mirror: the
    portal's check finds no pending change and the contract refuses the removal."""
    from portal.core import chain as portal_chain

    registry = portal_chain.registry()
    receipt = registry.propose_rotation(
        northside.chain_member_id, NEW_ADDRESS, sender_key=consortium[2].key
    )
    pending = registry.proposal_id_from(registry.decode_events(receipt))
    assert not Proposal.objects.exists()

    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True
    )

    assert response.status_code == 200
    refusal = (
        f"ConsortiumRegistryChangePending(memberId={northside.chain_member_id}, "
        f"proposalId={pending})"
    )
    assert f"The chain refused this: {refusal}" in " ".join(messages_of(response))
    assert "Traceback" not in response.content.decode()


# --- Rotation ------------------------------------------------------------------------------


def test_a_rotation_voted_through_moves_the_governance_address(
    admin_client, consortium, second_admin
):
    mary = _founder(consortium, 0)
    typed_url = reverse("rotation_typed_data", args=[mary.pk])
    signature = _wallet_sign(admin_client, typed_url, consortium[0].key, new_governance=NEW_ADDRESS)

    response = admin_client.post(
        reverse("rotation", args=[mary.pk]),
        {"new_governance": NEW_ADDRESS.lower(), "signature": signature},
        follow=True,
    )

    proposal = Proposal.objects.get(subject=mary, kind=Proposal.Kind.ROTATION)
    assert response.redirect_chain[-1][0] == reverse("proposal", args=[proposal.chain_proposal_id])
    assert f"governance to {NEW_ADDRESS}" in " ".join(messages_of(response))
    assert proposal.new_governance_address == NEW_ADDRESS
    for i in (1, 2):
        proposal = services.vote_cast(
            voter=_founder(consortium, i), proposal=proposal, support=True
        )
    assert proposal.status == Proposal.Status.ACCEPTED
    mary.refresh_from_db()
    assert mary.governance_address == NEW_ADDRESS
    assert mary.status == Member.Status.ACTIVE


def test_an_admin_proposes_a_rotation_for_another_member_with_the_demo_keystore(
    admin_client, northside
):
    response = admin_client.post(
        reverse("rotation", args=[northside.pk]), {"new_governance": NEW_ADDRESS, "demo": "1"}
    )

    proposal = Proposal.objects.get(subject=northside)
    assert response["Location"] == reverse("proposal", args=[proposal.chain_proposal_id])
    assert proposal.kind == Proposal.Kind.ROTATION


def test_a_rotation_to_an_address_in_use_is_refused(admin_client, consortium, northside):
    response = admin_client.post(
        reverse("rotation", args=[northside.pk]),
        {"new_governance": consortium[1].address, "demo": "1"},
    )

    assert response.status_code == 200
    assert f"{consortium[1].address} is already the governance address of City General" in (
        " ".join(messages_of(response))
    )
    assert consortium[1].address in response.content.decode()  # kept in the form
    typed = admin_client.post(
        reverse("rotation_typed_data", args=[northside.pk]),
        {"new_governance": consortium[1].address},
    )
    assert typed.status_code == 400
    assert "already the governance address" in typed.json()["error"]
    assert not Proposal.objects.exists()


def test_a_rotation_to_an_address_already_proposed_is_refused(admin_client, consortium, northside):
    services.rotation_propose(
        proposer=_founder(consortium, 0), member=northside, new_governance=NEW_ADDRESS
    )
    city = _founder(consortium, 1)

    response = admin_client.post(
        reverse("rotation", args=[city.pk]), {"new_governance": NEW_ADDRESS, "demo": "1"}
    )

    assert "is already proposed for Northside Clinic" in " ".join(messages_of(response))


def test_a_rotation_to_a_malformed_address_is_refused(admin_client, northside):
    response = admin_client.post(
        reverse("rotation", args=[northside.pk]), {"new_governance": "0x12", "demo": "1"}
    )

    assert "is not an Ethereum address" in " ".join(messages_of(response))


def test_a_rotation_while_a_removal_is_pending_is_refused(admin_client, removal_open, northside):
    response = admin_client.post(
        reverse("rotation", args=[northside.pk]), {"new_governance": NEW_ADDRESS, "demo": "1"}
    )

    assert "already has a removal proposal open" in " ".join(messages_of(response))


def test_a_clinician_cannot_propose_a_rotation(clinician, consortium):
    client = signed_in(clinician)
    mary = _founder(consortium, 0)

    response = client.post(
        reverse("rotation", args=[mary.pk]), {"new_governance": NEW_ADDRESS, "demo": "1"}
    )

    assert "only the admin of an active member hospital" in " ".join(messages_of(response))
    typed_url = reverse("rotation_typed_data", args=[mary.pk])
    assert client.post(typed_url, {"new_governance": NEW_ADDRESS}).status_code == 403


# --- Outsiders -----------------------------------------------------------------------------


def test_the_outsider_is_refused_every_change_route(outsider, consortium, northside):
    client = signed_in(outsider)
    own = outsider.staff.member

    for member in (northside, own):
        for url in _new_routes(member):
            response = client.post(url, {"demo": "1", "new_governance": NEW_ADDRESS})
            assert response.status_code == 302, url
            assert response["Location"] == reverse("dashboard"), url
        for url in (reverse("removal", args=[member.pk]), reverse("rotation", args=[member.pk])):
            assert client.get(url)["Location"] == reverse("dashboard"), url
    assert not Proposal.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, northside):
    for url in _new_routes(northside):
        response = client.post(url, {"demo": "1"})
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_a_change_past_its_deadline_must_be_finalized_first(admin_client, removal_open, northside):
    Proposal.objects.filter(pk=removal_open.pk).update(deadline=timezone.now() - timedelta(hours=1))

    response = admin_client.post(
        reverse("removal", args=[northside.pk]), {"demo": "1"}, follow=True
    )

    assert "is past its deadline but not closed: finalize it first" in " ".join(
        messages_of(response)
    )
