"""The governance admin: a governor with a verified second factor looks, never overrides."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.consortium.models import Member, Proposal, Staff, Vote
from tests.factories import (
    ActiveMemberFactory,
    ChainEventRecordFactory,
    ChainSyncStateFactory,
    GrantFactory,
    InvitationFactory,
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


# --- The governor the demo creates: view permissions only, not a superuser -----------------


@pytest.fixture
def watched() -> dict[str, object]:
    """One row of each governed kind, as the chain sync and the services would leave them."""
    grant = GrantFactory(
        version__dataset__owner__name="Harbour Hospital",
        version__dataset__title="Harbour chest CT",
        node__label="Harbour node 1",
    )
    version = grant.version
    return {
        "consortium/member": version.dataset.owner,
        "consortium/proposal": ProposalFactory(yes=2, no=0),
        "nodes/node": grant.node,
        "datasets/dataset": version.dataset,
        "datasets/datasetversion": version,
        "datasets/grant": grant,
        "core/chainsyncstate": ChainSyncStateFactory(last_block=40, head_block=45),
    }


@pytest.fixture
def view_only_governor() -> Client:
    from portal.consortium import services

    user = services.governor_create(
        username="governor", password="medchain-demo", email="governor@consortium.example"
    )
    assert (user.is_staff, user.is_superuser) == (True, False)
    client = Client()
    verified_login(client, user)
    return client


def test_the_governor_sees_members_proposals_nodes_datasets_grants_and_sync(
    view_only_governor, watched
):
    expected = {
        "consortium/member": b"Harbour Hospital",
        "consortium/proposal": b"2 / 0 of 3",
        "nodes/node": b"Harbour node 1",
        "datasets/dataset": b"Harbour chest CT",
        "datasets/datasetversion": b"Harbour chest CT (Harbour Hospital)",
        "datasets/grant": b"Harbour node 1",
        "core/chainsyncstate": b"40",
    }
    index = view_only_governor.get("/admin/")
    assert index.status_code == 200
    for path, text in expected.items():
        assert f"/admin/{path}/".encode() in index.content, path
        listing = view_only_governor.get(f"/admin/{path}/")
        assert listing.status_code == 200, path
        assert text in listing.content, path
        shown = view_only_governor.get(f"/admin/{path}/{watched[path].pk}/change/")
        assert shown.status_code == 200, path
        assert b'type="submit"' not in shown.content.split(b'id="content"')[1], path


def test_the_governor_can_add_change_or_delete_nothing(view_only_governor, watched):
    for path, row in watched.items():
        change = f"/admin/{path}/{row.pk}/change/"
        delete = f"/admin/{path}/{row.pk}/delete/"

        assert view_only_governor.post(change, {"status": "withdrawn"}).status_code == 403, path
        assert view_only_governor.post(delete, {"post": "yes"}).status_code == 403, path
        assert view_only_governor.get(f"/admin/{path}/add/").status_code == 403, path
        assert type(row).objects.filter(pk=row.pk).exists(), path
    assert view_only_governor.get("/admin/auth/user/").status_code == 403
    assert (
        view_only_governor.post(
            f"/admin/consortium/invitation/{InvitationFactory().pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )


def test_the_governor_needs_a_second_factor_like_an_admin(db):
    from portal.consortium import services

    user = services.governor_create(username="governor", password="pw-123456", email="g@x.example")
    client = Client()
    client.force_login(user)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/two-factor/")
