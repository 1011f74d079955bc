"""The API and the pages ask one selector who may act, and one service whether the action
fits the state of what it acts on: they cannot answer the same request differently."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.consortium import selectors, services
from portal.consortium.models import Member, Proposal
from portal.consortium.selectors import Action
from tests.factories import api_client, messages_of, signed_in

pytestmark = pytest.mark.django_db


def _founder(consortium, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


@pytest.fixture
def proposal(consortium, applicant) -> Proposal:
    """Harbour Hospital's admission, sponsored by St. Mary's."""
    return services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)


def _api_finalize(user, proposal: Proposal):
    return api_client(user).post(f"/api/v1/proposals/{proposal.chain_proposal_id}/finalize/")


def _page(user, proposal: Proposal):
    return signed_in(user).get(f"/proposals/{proposal.chain_proposal_id}/")


def _page_finalize(user, proposal: Proposal) -> str:
    response = signed_in(user).post(
        f"/proposals/{proposal.chain_proposal_id}/", {"action": "finalize"}, follow=True
    )
    return " ".join(messages_of(response))


def _past_deadline(proposal: Proposal, chain_client, monkeypatch) -> None:
    later = proposal.deadline + timedelta(seconds=5)
    chain_client.w3.provider.ethereum_tester.time_travel(int(later.timestamp()))
    monkeypatch.setattr(timezone, "now", lambda: later)


def test_it_lets_only_an_active_hospitals_admin_act(member_admin, clinician, outsider, consortium):
    mary = _founder(consortium, 0)
    for action in (Action.SPONSOR, Action.PROPOSE_REMOVAL, Action.VOTE, Action.FINALIZE):
        assert selectors.may_act(viewer=member_admin, action=action, member=mary).allowed
        clinician_says = selectors.may_act(viewer=clinician, action=action, member=mary)
        assert not clinician_says.allowed
        assert "you are its clinician" in clinician_says.refusal
        outsider_says = selectors.may_act(viewer=outsider, action=action, member=mary)
        assert "only active hospital members may" in outsider_says.refusal


def test_it_lets_a_members_own_admin_propose_its_rotation_only(member_admin, consortium):
    mary, city = _founder(consortium, 0), _founder(consortium, 1)
    own = selectors.may_act(viewer=member_admin, action=Action.PROPOSE_ROTATION, member=mary)
    assert own.allowed and own.staff is not None and own.staff.member == mary
    assert selectors.may_act(
        viewer=member_admin, action=Action.PROPOSE_ROTATION, member=city
    ).allowed


def test_a_non_admin_may_finalize_neither_by_api_nor_on_the_page(
    clinician, proposal, chain_client, monkeypatch
):
    _past_deadline(proposal, chain_client, monkeypatch)

    assert _api_finalize(clinician, proposal).status_code == 403
    assert "Close the proposal" not in _page(clinician, proposal).content.decode()
    assert Action.FINALIZE.rule in _page_finalize(clinician, proposal)
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.OPEN


def test_an_admin_may_not_finalize_before_the_deadline_by_either_way(member_admin, proposal):
    response = _api_finalize(member_admin, proposal)

    assert response.status_code == 400
    assert "is open for votes until" in response.json()["error"]
    assert "Close the proposal" not in _page(member_admin, proposal).content.decode()
    assert "is open for votes until" in _page_finalize(member_admin, proposal)


def test_an_admin_may_finalize_after_the_deadline_by_either_way(
    member_admin, second_admin, proposal, chain_client, monkeypatch
):
    _past_deadline(proposal, chain_client, monkeypatch)

    assert "Close the proposal" in _page(member_admin, proposal).content.decode()
    assert f"Proposal #{proposal.chain_proposal_id} is closed" in _page_finalize(
        member_admin, proposal
    )
    response = _api_finalize(second_admin, proposal)
    assert response.status_code == 400
    assert "is already decided" in response.json()["error"]


def test_the_api_and_the_page_refuse_sponsoring_an_applicant_no_longer_applying(
    consortium, member_admin, second_admin, proposal
):
    applicant = proposal.subject
    assert applicant.status == Member.Status.PROPOSED

    api = api_client(second_admin).post(f"/api/v1/applications/{applicant.pk}/sponsor/typed-data/")
    page = signed_in(second_admin).post(f"/members/{applicant.pk}/sponsor/typed-data")

    assert (api.status_code, page.status_code) == (400, 400)
    refusal = f"{applicant.name} cannot be sponsored now (Proposed"
    assert refusal in api.json()["error"]
    assert refusal in page.json()["error"]


def test_the_api_and_the_page_refuse_a_clinician_the_sponsor_typed_data(clinician, applicant):
    api = api_client(clinician).post(f"/api/v1/applications/{applicant.pk}/sponsor/typed-data/")
    page = signed_in(clinician).post(f"/members/{applicant.pk}/sponsor/typed-data")

    assert (api.status_code, page.status_code) == (403, 403)
    assert "you are its clinician" in api.json()["error"]
    assert page.json()["error"] == Action.SPONSOR.rule
