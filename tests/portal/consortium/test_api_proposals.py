from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.consortium import services
from portal.consortium.models import Member, Proposal, Staff
from tests.factories import api_client, other_applicant, wallet_sign

pytestmark = pytest.mark.django_db


def _founder(consortium, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


@pytest.fixture
def proposal(consortium, applicant) -> Proposal:
    """Harbour Hospital's admission, sponsored by St. Mary's."""
    return services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)


@pytest.fixture
def third_admin(consortium):
    return services.staff_create(
        member=_founder(consortium, 2),
        username="north-admin",
        password="north-pass-123",
        email="admin@north.example",
        role=Staff.Role.ADMIN,
    ).user


@pytest.fixture
def other_proposal(consortium, applicant) -> Proposal:
    """An admission that is none of the outsider's business."""
    lakeside = other_applicant(1, "Lakeside Hospital", "lakeside-admin")
    return services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=lakeside)


def _url(proposal: Proposal, action: str = "") -> str:
    return f"/api/v1/proposals/{proposal.chain_proposal_id}/{action}"


def test_it_lists_proposals_with_their_tallies(member_admin, proposal):
    response = api_client(member_admin).get("/api/v1/proposals/")

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert item["id"] == proposal.chain_proposal_id
    assert (item["yes"], item["no"], item["eligible"]) == (0, 0, 3)
    assert item["status"] == "open"
    assert item["is_open"] is True
    assert item["deadline"]


def test_it_shows_a_proposal_with_its_votes(member_admin, proposal):
    voted = api_client(member_admin).post(
        _url(proposal, "vote/"), {"support": True, "demo_keystore": True}, format="json"
    )
    assert voted.status_code == 200, voted.json()

    response = api_client(member_admin).get(_url(proposal))

    assert response.status_code == 200
    body = response.json()
    assert body["yes"] == 1
    assert body["subject"]["name"] == "Harbour Hospital"
    [vote] = body["votes"]
    assert vote["voter"]["name"] == "St. Mary's Hospital"
    assert vote["support"] is True
    assert vote["tx_hash"].startswith("0x")


def test_it_shows_the_outsider_its_own_admission(outsider, proposal):
    response = api_client(outsider).get(_url(proposal))

    assert response.status_code == 200
    assert [p["id"] for p in api_client(outsider).get("/api/v1/proposals/").json()["results"]] == [
        proposal.chain_proposal_id
    ]


def test_it_hides_other_proposals_from_the_outsider(outsider, other_proposal):
    client = api_client(outsider)

    assert client.get(_url(other_proposal)).status_code == 404
    assert (
        client.post(_url(other_proposal, "vote/typed-data/"), {"support": True}).status_code == 404
    )
    assert client.post(_url(other_proposal, "vote/"), {"support": True}).status_code == 404
    assert client.post(_url(other_proposal, "finalize/")).status_code == 404
    ids = [p["id"] for p in client.get("/api/v1/proposals/").json()["results"]]
    assert other_proposal.chain_proposal_id not in ids


def test_it_refuses_proposals_to_anonymous(proposal):
    client = api_client()

    assert client.get("/api/v1/proposals/").status_code == 401
    assert client.get(_url(proposal)).status_code == 401
    assert client.post(_url(proposal, "vote/"), {"support": True}).status_code == 401
    assert client.post(_url(proposal, "finalize/")).status_code == 401


def test_it_gives_a_member_admin_the_vote_to_sign(member_admin, proposal, consortium):
    response = api_client(member_admin).post(
        _url(proposal, "vote/typed-data/"), {"support": False}, format="json"
    )

    assert response.status_code == 200
    message = response.json()["message"]
    assert message["support"] is False
    assert message["voter"] == consortium[0].address


def test_it_relays_a_vote_signed_in_a_wallet(member_admin, proposal, consortium):
    client = api_client(member_admin)
    typed = client.post(_url(proposal, "vote/typed-data/"), {"support": True}, format="json")

    response = client.post(
        _url(proposal, "vote/"),
        {"support": True, "signature": wallet_sign(consortium[0].key, typed.json())},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["yes"] == 1


def test_it_refuses_a_vote_signed_by_someone_else(member_admin, proposal, consortium):
    client = api_client(member_admin)
    typed = client.post(_url(proposal, "vote/typed-data/"), {"support": True}, format="json")

    response = client.post(
        _url(proposal, "vote/"),
        {"support": True, "signature": wallet_sign(consortium[2].key, typed.json())},
        format="json",
    )

    assert response.status_code == 400
    assert f"the signature is by {consortium[2].address}" in response.json()["error"]
    proposal.refresh_from_db()
    assert proposal.yes == 0


def test_it_refuses_a_signature_for_the_other_choice(member_admin, proposal, consortium):
    client = api_client(member_admin)
    typed = client.post(_url(proposal, "vote/typed-data/"), {"support": True}, format="json")

    response = client.post(
        _url(proposal, "vote/"),
        {"support": False, "signature": wallet_sign(consortium[0].key, typed.json())},
        format="json",
    )

    assert response.status_code == 400
    assert "not by St. Mary's Hospital's governance address" in response.json()["error"]


def test_it_refuses_a_double_vote(member_admin, proposal):
    client = api_client(member_admin)
    assert (
        client.post(_url(proposal, "vote/"), {"support": True, "demo_keystore": True}).status_code
        == 200
    )

    response = client.post(_url(proposal, "vote/"), {"support": False, "demo_keystore": True})

    assert response.status_code == 400
    assert "St. Mary's Hospital has already voted" in response.json()["error"]
    proposal.refresh_from_db()
    assert (proposal.yes, proposal.no) == (1, 0)


def test_it_refuses_a_vote_on_a_decided_proposal(member_admin, second_admin, third_admin, proposal):
    demo_yes = {"support": True, "demo_keystore": True}
    assert api_client(member_admin).post(_url(proposal, "vote/"), demo_yes).status_code == 200
    assert api_client(second_admin).post(_url(proposal, "vote/"), demo_yes).status_code == 200

    response = api_client(third_admin).post(
        _url(proposal, "vote/"), {"support": False, "demo_keystore": True}
    )

    assert response.status_code == 400
    assert "is no longer open" in response.json()["error"]


def test_it_refuses_a_vote_without_a_choice(member_admin, proposal):
    response = api_client(member_admin).post(_url(proposal, "vote/"), {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "support: This field is required."


def test_it_refuses_a_clinician_to_vote(clinician, proposal):
    client = api_client(clinician)

    for action in ("vote/typed-data/", "vote/"):
        response = client.post(_url(proposal, action), {"support": True})
        assert response.status_code == 403
        assert "only the admin of St. Mary's Hospital may vote" in response.json()["error"]


def test_it_refuses_the_outsider_a_vote_on_its_own_admission(outsider, proposal):
    response = api_client(outsider).post(_url(proposal, "vote/"), {"support": True})

    assert response.status_code == 403
    assert "only active hospital members may vote" in response.json()["error"]


def test_it_refuses_to_finalize_before_the_deadline(member_admin, proposal):
    response = api_client(member_admin).post(_url(proposal, "finalize/"))

    assert response.status_code == 400
    assert "open for votes until" in response.json()["error"]


def test_it_refuses_to_finalize_a_decided_proposal(member_admin, second_admin, proposal):
    demo_yes = {"support": True, "demo_keystore": True}
    assert api_client(member_admin).post(_url(proposal, "vote/"), demo_yes).status_code == 200
    assert api_client(second_admin).post(_url(proposal, "vote/"), demo_yes).status_code == 200

    response = api_client(member_admin).post(_url(proposal, "finalize/"))

    assert response.status_code == 400
    assert "is already decided" in response.json()["error"]


def test_it_refuses_a_clinician_to_finalize(clinician, proposal):
    response = api_client(clinician).post(_url(proposal, "finalize/"))

    assert response.status_code == 403


def test_it_answers_an_unknown_proposal_with_a_json_404(member_admin, consortium):
    response = api_client(member_admin).get("/api/v1/proposals/4242/")

    assert response.status_code == 404
    assert response.json()["error"]


def test_it_finalizes_a_proposal_whose_deadline_passed(
    member_admin, proposal, chain_client, monkeypatch
):
    demo_yes = {"support": True, "demo_keystore": True}
    assert api_client(member_admin).post(_url(proposal, "vote/"), demo_yes).status_code == 200
    proposal.refresh_from_db()
    later = proposal.deadline + timedelta(seconds=5)
    chain_client.w3.provider.ethereum_tester.time_travel(int(later.timestamp()))
    monkeypatch.setattr(timezone, "now", lambda: later)

    response = api_client(member_admin).post(_url(proposal, "finalize/"))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["yes"], body["is_open"]) == ("rejected", 1, False)
    assert Member.objects.get(pk=proposal.subject_id).status == Member.Status.REFUSED
