"""The membership pages, through Django's test client on the in-process chain.

Personas come from tests/conftest.py: `member_admin` and `second_admin` (admins
of founding hospitals), `clinician`, `outsider` (the admin of a hospital that has
applied, not a member) and anonymous.
"""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from eth_account import Account

from chain import eip712
from portal.consortium import services
from portal.consortium.models import Invitation, Member, Proposal, Staff
from tests.factories import messages_of, signed_in

PASSWORD = "harbour-pass-2024"


def application_form(applicant: Any, **overrides: str) -> dict[str, str]:
    typed = services.application_typed_data(
        governance_address=applicant.address,
        role=1,
        data_public_key=applicant.data_key,
        name=applicant.name,
    )
    data = {
        "name": applicant.name,
        "contact_email": "admin@harbour.example",
        "role": "1",
        "governance_address": applicant.address,
        "data_public_key": applicant.data_key,
        "admin_username": "harbour-admin",
        "admin_password": PASSWORD,
        "signature": "0x" + eip712.sign_typed(applicant.key, typed).hex(),
    }
    data.update(overrides)
    return data


@pytest.fixture
def admin_client(member_admin) -> Client:
    return signed_in(member_admin)


@pytest.fixture
def open_proposal(applicant, member_admin) -> Proposal:
    sponsor = Member.objects.get(staff__user=member_admin)
    return services.admission_sponsor(sponsor=sponsor, applicant=applicant)


# --- Refusals -----------------------------------------------------------------------------


MEMBER_PAGES = ["members", "proposals", "staff"]


def test_an_anonymous_visitor_reads_what_medchain_is_and_how_to_join(client, consortium):
    response = client.get(reverse("dashboard"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "How a hospital joins" in body and "3 members today" in body
    assert f'href="{reverse("apply")}"' in body and f'href="{reverse("login")}"' in body


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_it_sends_anonymous_visitors_to_sign_in(client, consortium, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_sends_anonymous_visitors_to_sign_in_for_objects(client, open_proposal, applicant):
    for url in (
        reverse("proposal", args=[open_proposal.chain_proposal_id]),
        reverse("sponsor", args=[applicant.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_it_shows_an_outsider_only_its_application_status(outsider, name):
    client = signed_in(outsider)
    response = client.get(reverse(name), follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    body = response.content.decode()
    assert "Application status" in body
    assert "Applied, awaiting a sponsor" in body
    assert "Only staff of consortium members" in " ".join(messages_of(response))
    assert "St. Mary" not in body  # no other member is listed


def test_it_refuses_an_outsider_the_proposal_and_sponsor_pages(outsider, open_proposal, applicant):
    client = signed_in(outsider)
    for url in (
        reverse("proposal", args=[open_proposal.chain_proposal_id]),
        reverse("sponsor", args=[applicant.pk]),
    ):
        assert client.get(url)["Location"] == reverse("dashboard")
    response = client.post(
        reverse("vote_typed_data", args=[open_proposal.chain_proposal_id]), {"support": "yes"}
    )
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).context["own_proposals"].count() == 1


def test_it_asks_an_admin_for_the_second_factor_first(client, member_admin):
    client.force_login(member_admin)
    response = client.get(reverse("members"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('two_factor')}?next=/members/"


# --- Two-factor sign-in -------------------------------------------------------------------


def test_it_sets_up_totp_on_an_admins_first_sign_in(client, member_admin):
    assert client.login(username="mary-admin", password="mary-pass-123")
    response = client.get(reverse("two_factor") + "?next=/members/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in body and "authenticator app" in body
    device = TOTPDevice.objects.get(user=member_admin)
    assert not device.confirmed
    assert response.context["secret"] in body

    wrong = client.post(reverse("two_factor"), {"token": "000000", "next": "/members/"})
    assert "That code is not valid" in " ".join(messages_of(wrong))

    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    code = f"{TOTP(device.bin_key).token():06d}"
    response = client.post(reverse("two_factor"), {"token": code, "next": "/members/"})
    # Confirming the app shows the recovery codes, once, then continues where the admin was going.
    codes = response.context["codes"]
    assert (
        response.status_code == 200
        and len(codes) == 10
        and 'href="/members/"' in (response.content.decode())
    )
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(reverse("members")).status_code == 200


def test_after_a_wrong_code_the_wait_said_is_the_true_one(client, member_admin):
    device = TOTPDevice.objects.create(user=member_admin, name="phone", confirmed=True)
    client.force_login(member_admin)
    client.post(reverse("two_factor"), {"token": "000000"})
    code = f"{TOTP(device.bin_key).token():06d}"
    refused = " ".join(messages_of(client.post(reverse("two_factor"), {"token": code})))
    # django-otp's throttle: 1 s after one wrong code, doubling after each further one.
    assert "wait 1 second," in refused and "minute" not in refused
    device.refresh_from_db()
    device.throttling_failure_timestamp -= timedelta(seconds=1)
    device.save()
    assert client.post(reverse("two_factor"), {"token": code})["Location"] == "/"


def test_a_recovery_code_signs_in_once(client, member_admin):
    assert client.login(username="mary-admin", password="mary-pass-123")
    client.get(reverse("two_factor"))
    device = TOTPDevice.objects.get(user=member_admin)
    shown = client.post(reverse("two_factor"), {"token": f"{TOTP(device.bin_key).token():06d}"})
    codes = shown.context["codes"]
    assert all(code in shown.content.decode() for code in codes)
    client.logout()
    assert client.login(username="mary-admin", password="mary-pass-123")
    page = client.get(reverse("two_factor"))
    assert codes[0] not in page.content.decode()  # shown once only
    used = client.post(reverse("two_factor"), {"token": codes[0].upper()}, follow=True)
    assert "Signed in with a recovery code; 9 remain" in " ".join(messages_of(used))
    client.logout()
    assert client.login(username="mary-admin", password="mary-pass-123")
    again = client.post(reverse("two_factor"), {"token": codes[0]})
    assert "That code is not valid" in " ".join(messages_of(again))


def test_it_does_not_redirect_to_another_site_after_the_second_factor(client, member_admin):
    device = TOTPDevice.objects.create(user=member_admin, name="phone", confirmed=True)
    client.force_login(member_admin)
    code = f"{TOTP(device.bin_key).token():06d}"
    response = client.post(reverse("two_factor"), {"token": code, "next": "https://evil.example/"})
    assert response["Location"] == reverse("dashboard")


# --- Pages render for members -------------------------------------------------------------


def test_it_renders_every_page_for_a_member_admin(admin_client, open_proposal, applicant):
    for url in (
        reverse("dashboard"),
        reverse("members"),
        reverse("proposals"),
        reverse("staff"),
        reverse("proposal", args=[open_proposal.chain_proposal_id]),
        reverse("sponsor", args=[applicant.pk]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'href="/members/"' in body  # the nav
        assert "Traceback" not in body


def test_the_dashboard_lists_open_proposals_and_applications(admin_client, applicant):
    body = admin_client.get(reverse("dashboard")).content.decode()
    assert "Active member" in body
    assert applicant.name in body
    assert reverse("sponsor", args=[applicant.pk]) in body


def test_the_login_page_renders(client, consortium):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()


def test_the_members_page_lists_members_and_applicants(admin_client, applicant):
    body = admin_client.get(reverse("members")).content.decode()
    for name in ("St. Mary's Hospital", "City General", "Northside Clinic", applicant.name):
        assert name.replace("'", "&#x27;") in body
    assert "Review and sponsor" in body


# --- Applying -----------------------------------------------------------------------------


def test_the_apply_page_renders_for_anyone(client, consortium):
    response = client.get(reverse("apply"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-typed-data-url="/apply/typed-data"' in body
    assert "js/wallet.js" in body


def test_it_gives_the_typed_data_to_sign(client, consortium, applicant_keys):
    response = client.post(
        reverse("apply_typed_data"),
        {
            "name": applicant_keys.name,
            "role": "1",
            "governance_address": applicant_keys.address,
            "data_public_key": applicant_keys.data_key,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["signer"] == applicant_keys.address
    # What the browser's wallet signs (the JSON form) is what the portal checks.
    signed = Account.sign_typed_data(applicant_keys.key, full_message=body["typed"])
    typed = services.application_typed_data(
        governance_address=applicant_keys.address,
        role=1,
        data_public_key=applicant_keys.data_key,
        name=applicant_keys.name,
    )
    assert eip712.recover_typed(typed, bytes(signed.signature)) == applicant_keys.address


def test_the_typed_data_view_answers_errors_as_json(client, consortium):
    response = client.post(
        reverse("apply_typed_data"),
        {"name": "X", "role": "1", "governance_address": "0x12", "data_public_key": "0x00"},
    )
    assert response.status_code == 400
    assert "is not an Ethereum address" in response.json()["error"]


def test_an_applicant_applies_and_sees_its_status(client, consortium, applicant_keys):
    response = client.post(reverse("apply"), application_form(applicant_keys), follow=True)
    member = Member.objects.get(governance_address=applicant_keys.address)
    assert member.status == Member.Status.APPLIED
    # Signed in as the new hospital's admin, who must set up the second factor first.
    assert response.redirect_chain[-1][0].startswith(reverse("two_factor"))
    assert "application is received" in " ".join(messages_of(response))
    assert Staff.objects.get(member=member).role == Staff.Role.ADMIN


def test_apply_shows_a_bad_signature_on_the_page(client, consortium, applicant_keys):
    other = Account.create()
    form = application_form(applicant_keys, governance_address=other.address)
    response = client.post(reverse("apply"), form)
    assert response.status_code == 200
    assert "not by the applicant address" in " ".join(messages_of(response))
    assert not Member.objects.filter(governance_address=other.address).exists()


def test_apply_without_a_signature_says_to_sign(client, consortium, applicant_keys):
    response = client.post(reverse("apply"), application_form(applicant_keys, signature=""))
    assert response.status_code == 200
    assert "not signed" in " ".join(messages_of(response))


def test_apply_twice_is_refused_on_the_page(client, applicant, applicant_keys):
    form = application_form(applicant_keys, admin_username="someone-else")
    response = client.post(reverse("apply"), form)
    assert response.status_code == 200
    assert "has already applied" in " ".join(messages_of(response))


# --- Sponsoring and voting ----------------------------------------------------------------


def test_an_admin_sponsors_with_the_demo_keystore(admin_client, applicant):
    response = admin_client.post(reverse("sponsor", args=[applicant.pk]), {"demo": "1"})
    proposal = Proposal.objects.get(subject=applicant)
    assert response["Location"] == reverse("proposal", args=[proposal.chain_proposal_id])
    applicant.refresh_from_db()
    assert applicant.status == Member.Status.PROPOSED


def test_sponsoring_without_a_signature_is_refused_on_the_page(admin_client, applicant):
    response = admin_client.post(reverse("sponsor", args=[applicant.pk]), {}, follow=True)
    assert "no signature was sent" in " ".join(messages_of(response))
    assert not Proposal.objects.exists()


def test_a_wallet_signature_by_someone_else_is_refused_on_the_page(
    admin_client, applicant, consortium
):
    typed = admin_client.post(reverse("sponsor_typed_data", args=[applicant.pk])).json()["typed"]
    wrong = Account.sign_typed_data(consortium[2].key, full_message=typed)
    response = admin_client.post(
        reverse("sponsor", args=[applicant.pk]),
        {"signature": "0x" + bytes(wrong.signature).hex()},
        follow=True,
    )
    assert "not by St. Mary" in " ".join(messages_of(response))


def test_members_vote_with_their_wallets_until_admitted(
    open_proposal, member_admin, second_admin, consortium, applicant
):
    number = open_proposal.chain_proposal_id
    for user, founder in ((member_admin, consortium[0]), (second_admin, consortium[1])):
        client = signed_in(user)
        answer = client.post(reverse("vote_typed_data", args=[number]), {"support": "yes"})
        assert answer.json()["signer"] == founder.address
        # The browser hands the wallet JSON: sign exactly that.
        typed = json.loads(json.dumps(answer.json()["typed"]))
        signed = Account.sign_typed_data(founder.key, full_message=typed)
        response = client.post(
            reverse("proposal", args=[number]),
            {"support": "yes", "signature": "0x" + bytes(signed.signature).hex()},
            follow=True,
        )
        assert "Your yes vote" in " ".join(messages_of(response))
    open_proposal.refresh_from_db()
    assert open_proposal.status == Proposal.Status.ACCEPTED
    applicant.refresh_from_db()
    assert applicant.status == Member.Status.ACTIVE
    body = signed_in(applicant.staff.get().user).get(reverse("dashboard")).content.decode()
    assert "Active member" in body


def test_a_second_vote_is_refused_on_the_page(admin_client, open_proposal):
    url = reverse("proposal", args=[open_proposal.chain_proposal_id])
    admin_client.post(url, {"support": "no", "demo": "1"})
    response = admin_client.post(url, {"support": "yes", "demo": "1"}, follow=True)
    assert "has already voted" in " ".join(messages_of(response))
    body = response.content.decode()
    assert "You voted <strong>no</strong>" in body
    assert "Traceback" not in body


def test_a_clinician_sees_a_proposal_but_cannot_vote(clinician, open_proposal):
    client = signed_in(clinician)
    url = reverse("proposal", args=[open_proposal.chain_proposal_id])
    body = client.get(url).content.decode()
    assert "Only the admin of an active hospital member votes" in body
    assert "data-wallet-sign" not in body
    response = client.post(url, {"support": "yes", "demo": "1"}, follow=True)
    assert "only the admin" in " ".join(messages_of(response))
    typed_url = reverse("vote_typed_data", args=[open_proposal.chain_proposal_id])
    assert client.post(typed_url, {"support": "yes"}).status_code == 403


def test_a_contract_error_is_a_message_not_a_traceback(
    admin_client, consortium, member_admin, open_proposal
):
    """St. Mary's votes straight on chain, unseen by the mirror: the portal's own check
    passes and the contract refuses the relayed vote."""
    from portal.core import chain as portal_chain

    mary = Member.objects.get(staff__user=member_admin)
    number = open_proposal.chain_proposal_id
    portal_chain.registry().vote(number, False, sender_key=consortium[0].key)
    assert not open_proposal.votes.exists()

    response = admin_client.post(
        reverse("proposal", args=[number]), {"support": "yes", "demo": "1"}, follow=True
    )

    assert response.status_code == 200
    refusal = f"QuorumVoteAlreadyVoted(proposalId={number}, memberId={mary.chain_member_id})"
    assert f"The chain refused this: {refusal}" in " ".join(messages_of(response))
    assert "Traceback" not in response.content.decode()


def test_an_unreachable_chain_is_a_message_not_a_traceback(admin_client, applicant, settings):
    """The portal's chain node is down: nothing listens on its port."""
    from portal.core import chain as portal_chain

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{port}"
    portal_chain.use_client(None)

    response = admin_client.post(
        reverse("sponsor", args=[applicant.pk]), {"demo": "1"}, follow=True
    )

    assert "The chain is unavailable" in " ".join(messages_of(response))
    applicant.refresh_from_db()
    assert applicant.status == Member.Status.APPLIED


def test_demo_signing_is_refused_when_demo_keystores_are_off(admin_client, applicant, settings):
    settings.DEMO_KEYSTORES = False
    url = reverse("sponsor", args=[applicant.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="signer"' not in page and 'name="demo"' not in page
    assert page.count('data-testid="wallet-status"') == 1
    response = admin_client.post(url, {"demo": "1"}, follow=True)
    assert "demo keystores are disabled" in " ".join(messages_of(response))


# --- Staff --------------------------------------------------------------------------------


def test_an_admin_invites_a_colleague_who_accepts(admin_client, member_admin):
    response = admin_client.post(
        reverse("staff"),
        {"action": "invite", "email": "nurse@mary.example", "role": "steward"},
        follow=True,
    )
    invitation = Invitation.objects.get(email="nurse@mary.example")
    assert "created and mailed" in " ".join(messages_of(response))
    # Mailed through Django's email backend, and listed to copy under Open invitations.
    (sent,) = mail.outbox
    assert sent.to == ["nurse@mary.example"] and invitation.token in sent.body
    assert f'data-copy="http://testserver/accounts/invitations/{invitation.token}/"' in (
        response.content.decode()
    )

    guest = Client()
    url = reverse("invitation_accept", args=[invitation.token])
    assert guest.get(url).status_code == 200
    response = guest.post(url, {"username": "mary-steward", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    staff = Staff.objects.get(user__username="mary-steward")
    assert staff.role == Staff.Role.STEWARD
    assert staff.member == Member.objects.get(staff__user=member_admin)


def test_an_admin_resends_and_cancels_an_open_invitation(admin_client, member_admin):
    admin = Staff.objects.get(user=member_admin)
    invitation = services.staff_invite(admin=admin, email="late@mary.example", role="clinician")
    link = f"http://testserver/accounts/invitations/{invitation.token}/"
    post = {"action": "resend", "invitation": invitation.pk}
    response = admin_client.post(reverse("staff"), post, follow=True)
    assert "mailed again to late@mary.example" in " ".join(messages_of(response))
    assert [m.to for m in mail.outbox] == [["late@mary.example"]] and link in mail.outbox[0].body

    post["action"] = "cancel"
    response = admin_client.post(reverse("staff"), post, follow=True)
    assert "is cancelled" in " ".join(messages_of(response))
    assert link not in response.content.decode()  # no longer listed
    assert Client().get(link).status_code == 404
    post["action"] = "resend"  # a cancelled invitation is not mailed again
    response = admin_client.post(reverse("staff"), post, follow=True)
    assert "already used or expired" in " ".join(messages_of(response))
    assert len(mail.outbox) == 1


def test_a_used_invitation_is_refused_on_the_page(client, member_admin):
    admin = Staff.objects.get(user=member_admin)
    invitation = services.staff_invite(admin=admin, email="x@mary.example", role="clinician")
    services.invitation_accept(token=invitation.token, username="x-user", password=PASSWORD)
    response = client.get(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 404
    assert "unknown, used or expired" in response.content.decode()


def test_an_admin_removes_staff_but_not_themself(admin_client, member_admin, clinician):
    own = Staff.objects.get(user=member_admin)
    response = admin_client.post(
        reverse("staff"), {"action": "remove", "staff": own.pk}, follow=True
    )
    assert "cannot remove themself" in " ".join(messages_of(response))
    target = Staff.objects.get(user=clinician)
    admin_client.post(reverse("staff"), {"action": "remove", "staff": target.pk})
    assert not Staff.objects.filter(pk=target.pk).exists()


def test_removing_staff_asks_first_and_names_the_consequence(admin_client, clinician):
    page = admin_client.get(reverse("staff")).content.decode()

    assert 'data-confirm-action="Remove mary-clinician"' in page
    assert "loses access to St. Mary&#x27;s Hospital at once" in page
    assert "/static/js/confirm.js" in page


def test_a_clinician_sees_staff_but_cannot_invite(clinician):
    client = signed_in(clinician)
    body = client.get(reverse("staff")).content.decode()
    assert "mary-clinician" in body
    assert "Invite a colleague" not in body
    response = client.post(
        reverse("staff"), {"action": "invite", "email": "a@b.example", "role": "admin"}, follow=True
    )
    assert "only the member's admin can invite" in " ".join(messages_of(response))
