"""The governance admin: a governor with a verified second factor looks, never overrides."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.consortium.models import Member, Proposal, Staff, Vote
from tests.factories import (
    ActiveMemberFactory,
    ChainEventRecordFactory,
    ChainSyncStateFactory,
    MemberFactory,
    ProposalFactory,
    StaffFactory,
    SuperuserFactory,
    VoteFactory,
    verified_login,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def governor() -> Client:
    client = Client()
    verified_login(client, SuperuserFactory())
    return client


@pytest.fixture
def proposal() -> Proposal:
    proposal = ProposalFactory(yes=1, no=1)
    VoteFactory(proposal=proposal, voter__name="City General", support=True)
    VoteFactory(proposal=proposal, voter__name="Northside Clinic", support=False)
    return proposal


def test_it_lists_members_with_role_status_and_chain_id(governor):
    MemberFactory(name="Harbour Hospital")

    response = governor.get("/admin/consortium/member/")

    assert response.status_code == 200
    assert b"Harbour Hospital" in response.content
    assert b"Applied, awaiting a sponsor" in response.content


def test_it_filters_members_by_status(governor):
    MemberFactory(name="Harbour Hospital")
    MemberFactory(name="Lakeside Hospital", status=Member.Status.ACTIVE)

    response = governor.get("/admin/consortium/member/", {"status__exact": "active"})

    assert b"Lakeside Hospital" in response.content
    assert b"Harbour Hospital" not in response.content


def test_it_lists_proposals_with_their_tallies(governor, proposal):
    response = governor.get("/admin/consortium/proposal/")

    assert response.status_code == 200
    assert b"1 / 1 of 3" in response.content


def test_it_shows_a_proposal_with_its_votes(governor, proposal):
    response = governor.get(f"/admin/consortium/proposal/{proposal.pk}/change/")

    assert response.status_code == 200
    assert b"City General" in response.content
    assert b"Northside Clinic" in response.content


def test_it_forbids_changing_a_mirrored_proposal(governor, proposal):
    response = governor.post(
        f"/admin/consortium/proposal/{proposal.pk}/change/",
        {"status": Proposal.Status.ACCEPTED, "yes": 3, "no": 0},
    )

    assert response.status_code == 403
    proposal.refresh_from_db()
    assert (proposal.status, proposal.yes) == (Proposal.Status.OPEN, 1)


def test_it_forbids_deleting_a_mirrored_proposal(governor, proposal):
    url = f"/admin/consortium/proposal/{proposal.pk}/delete/"

    assert governor.get(url).status_code == 403
    assert governor.post(url, {"post": "yes"}).status_code == 403
    assert Proposal.objects.filter(pk=proposal.pk).exists()


def test_it_forbids_adding_a_proposal_or_changing_a_vote(governor, proposal):
    assert governor.get("/admin/consortium/proposal/add/").status_code == 403
    assert governor.get("/admin/consortium/vote/").status_code == 404
    assert Vote.objects.count() == 2


def test_it_forbids_changing_a_member(governor):
    member = MemberFactory(name="Harbour Hospital")

    response = governor.post(
        f"/admin/consortium/member/{member.pk}/change/", {"status": Member.Status.ACTIVE}
    )

    assert response.status_code == 403
    member.refresh_from_db()
    assert member.status == Member.Status.APPLIED


def test_it_forbids_making_anyone_a_hospital_admin(governor):
    staff = StaffFactory()
    own = staff.member_id
    other = ActiveMemberFactory(name="Lakeside Hospital")

    changed = governor.post(
        f"/admin/consortium/staff/{staff.pk}/change/",
        {"user": staff.user.pk, "member": other.pk, "role": Staff.Role.ADMIN},
    )
    added = governor.post(
        "/admin/consortium/staff/add/",
        {"user": SuperuserFactory().pk, "member": other.pk, "role": Staff.Role.ADMIN},
    )
    removed = governor.post(f"/admin/consortium/staff/{staff.pk}/delete/", {"post": "yes"})

    assert (changed.status_code, added.status_code, removed.status_code) == (403, 403, 403)
    staff.refresh_from_db()
    assert (staff.member_id, staff.role) == (own, Staff.Role.CLINICIAN)
    assert Staff.objects.count() == 1


def test_it_shows_the_chain_sync_status(governor):
    ChainSyncStateFactory(last_block=40, head_block=45, last_error="connection refused")

    response = governor.get("/admin/core/chainsyncstate/")

    assert response.status_code == 200
    assert b"connection refused" in response.content
    assert b"6" in response.content


def test_it_forbids_editing_the_chain_sync_status(governor):
    state = ChainSyncStateFactory()

    response = governor.post(f"/admin/core/chainsyncstate/{state.pk}/change/", {"last_block": 1})

    assert response.status_code == 403


def test_it_lists_chain_events_and_deployments(governor):
    ChainEventRecordFactory(name="VoteCast")

    assert b"VoteCast" in governor.get("/admin/core/chaineventrecord/").content
    assert governor.get("/admin/core/contractdeployment/").status_code == 200


def test_it_lists_staff_invitations_and_delegates(governor):
    for url in ("staff", "invitation", "delegate"):
        assert governor.get(f"/admin/consortium/{url}/").status_code == 200


def test_it_sends_a_governor_without_a_second_factor_away(db):
    client = Client()
    client.force_login(SuperuserFactory())

    response = client.get("/admin/consortium/proposal/")

    assert response.status_code == 302
    assert "/admin/" not in response["Location"].split("?")[0]
