from __future__ import annotations

import pytest
from eth_account import Account

from portal.consortium import services
from portal.consortium.models import Member, Proposal, Staff
from portal.core.apis import ServiceError
from tests.conftest import sign_application
from tests.factories import InvitationFactory, StaffFactory, wallet_sign

pytestmark = pytest.mark.django_db


def _founder(consortium, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


def _submit(keys, signature: str) -> Member:
    return services.application_submit(
        name=keys.name,
        contact_email="admin@harbour.example",
        governance_address=keys.address,
        data_public_key=keys.data_key,
        signature=signature,
    )


def _refuse(consortium, applicant: Member) -> Proposal:
    proposal = services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)
    services.vote_cast(voter=_founder(consortium, 0), proposal=proposal, support=False)
    return services.vote_cast(voter=_founder(consortium, 1), proposal=proposal, support=False)


def test_it_stores_a_signed_application_off_chain(consortium, applicant_keys):
    member = _submit(applicant_keys, sign_application(applicant_keys))

    assert member.status == Member.Status.APPLIED
    assert member.chain_member_id is None
    assert member.name_hash == services.name_hash("Harbour Hospital")
    assert not Proposal.objects.exists()


def test_it_refuses_an_application_signed_by_another_key(consortium, applicant_keys):
    typed = services.application_typed_data(
        governance_address=applicant_keys.address,
        role=1,
        data_public_key=applicant_keys.data_key,
        name=applicant_keys.name,
    )
    signature = wallet_sign(consortium[0].key, typed)

    with pytest.raises(ServiceError, match=f"signed by {consortium[0].address}"):
        _submit(applicant_keys, signature)


def test_it_lets_a_refused_applicant_apply_again(consortium, applicant, applicant_keys):
    assert _refuse(consortium, applicant).status == Proposal.Status.REJECTED
    applicant.refresh_from_db()
    assert applicant.status == Member.Status.REFUSED

    again = _submit(applicant_keys, sign_application(applicant_keys))

    assert again.pk == applicant.pk
    assert again.status == Member.Status.APPLIED
    assert again.staff.count() == 1


def test_it_refuses_an_applicant_as_sponsor(consortium, applicant):
    with pytest.raises(ServiceError, match="only an active hospital member can sponsor"):
        services.admission_sponsor(sponsor=applicant, applicant=applicant)


def test_it_refuses_a_vote_from_an_applicant(consortium, applicant):
    proposal = services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)

    with pytest.raises(ServiceError, match="only active hospital members vote"):
        services.vote_cast(voter=applicant, proposal=proposal, support=True)


def test_it_refuses_a_double_vote_before_it_reaches_the_chain(consortium, applicant):
    mary = _founder(consortium, 0)
    proposal = services.admission_sponsor(sponsor=mary, applicant=applicant)
    services.vote_cast(voter=mary, proposal=proposal, support=True)

    with pytest.raises(ServiceError, match="has already voted"):
        services.vote_cast(voter=mary, proposal=proposal, support=False)


def test_it_refuses_a_vote_once_decided(consortium, applicant):
    proposal = _refuse(consortium, applicant)

    with pytest.raises(ServiceError, match="is no longer open"):
        services.vote_cast(voter=_founder(consortium, 2), proposal=proposal, support=True)


def test_it_needs_a_wallet_signature_without_demo_keystores(consortium, applicant, settings):
    settings.DEMO_KEYSTORES = False

    with pytest.raises(ServiceError, match="a signature from the member's wallet is required"):
        services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)


def test_it_refuses_a_sponsor_signature_by_a_stranger(consortium, applicant):
    mary = _founder(consortium, 0)
    typed = services.sponsor_typed_data(sponsor=mary, applicant=applicant)

    with pytest.raises(ServiceError, match="not by St. Mary's Hospital's governance address"):
        services.admission_sponsor(
            sponsor=mary,
            applicant=applicant,
            signature=wallet_sign(Account.create().key.hex(), typed),
        )


def test_it_refuses_a_non_admin_invitation(db):
    clinician = StaffFactory(role=Staff.Role.CLINICIAN)

    with pytest.raises(ServiceError, match="only the member's admin can invite"):
        services.staff_invite(admin=clinician, email="a@b.org", role=Staff.Role.CLINICIAN)


def test_it_turns_an_accepted_invitation_into_staff(db):
    invitation = InvitationFactory(role=Staff.Role.STEWARD)

    staff = services.invitation_accept(
        token=invitation.token, username="steward", password="a-long-pass-123"
    )

    assert (staff.member, staff.role) == (invitation.member, Staff.Role.STEWARD)
    assert staff.user.email == invitation.email


def test_it_refuses_another_members_admin_removing_staff(db):
    admin = StaffFactory(role=Staff.Role.ADMIN)
    stranger = StaffFactory()

    with pytest.raises(ServiceError, match="only the member's own admin"):
        services.staff_remove(admin=admin, staff=stranger)


def test_it_refuses_a_taken_username(db):
    taken = StaffFactory()

    with pytest.raises(ServiceError, match="is taken"):
        services.staff_create(
            member=taken.member,
            username=taken.user.username,
            password="x",
            email="x@example.org",
            role=Staff.Role.CLINICIAN,
        )
