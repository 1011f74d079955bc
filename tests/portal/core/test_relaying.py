"""What the relayer sends, from an attacker's side: nothing that would revert, no
malleable signature twin, nothing past a member's hourly budget."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from chain.errors import ContractError
from portal.consortium import services
from portal.consortium.models import Member, Proposal
from portal.core import chain as portal_chain
from portal.core.signing import SECP256K1_N
from tests.factories import api_client, other_applicant, wallet_sign

pytestmark = pytest.mark.django_db


def _founder(consortium, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


@pytest.fixture
def proposal(consortium, applicant) -> Proposal:
    return services.admission_sponsor(sponsor=_founder(consortium, 0), applicant=applicant)


def _relayer_nonce() -> int:
    client = portal_chain.client()
    return int(client.w3.eth.get_transaction_count(client.relayer))


def _vote_signature(member_admin, proposal: Proposal, key: str) -> str:
    url = f"/api/v1/proposals/{proposal.chain_proposal_id}/vote/typed-data/"
    typed = api_client(member_admin).post(url, {"support": True}, format="json").json()
    return wallet_sign(key, typed)


def _high_s_twin(signature: str) -> str:
    raw = bytes.fromhex(signature.removeprefix("0x"))
    s = int.from_bytes(raw[32:64], "big")
    v = 55 - raw[64]  # 27 <-> 28: the same signer recovers from (r, n - s, v')
    return "0x" + (raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])).hex()


def _vote(member_admin, proposal: Proposal, signature: str):
    return api_client(member_admin).post(
        f"/api/v1/proposals/{proposal.chain_proposal_id}/vote/",
        {"support": True, "signature": signature},
        format="json",
    )


def test_it_refuses_a_high_s_twin_of_a_valid_signature_before_relaying(
    member_admin, proposal, consortium
):
    twin = _high_s_twin(_vote_signature(member_admin, proposal, consortium[0].key))
    before = _relayer_nonce()

    response = _vote(member_admin, proposal, twin)

    assert response.status_code == 400
    assert "canonical form" in response.json()["error"]
    assert _relayer_nonce() == before
    proposal.refresh_from_db()
    assert proposal.yes == 0


@pytest.mark.parametrize("v", [0, 1, 29])
def test_it_refuses_a_signature_whose_v_is_not_27_or_28(member_admin, proposal, consortium, v):
    signature = _vote_signature(member_admin, proposal, consortium[0].key)
    bad = signature[:-2] + f"{v:02x}"

    response = _vote(member_admin, proposal, bad)

    assert response.status_code == 400
    assert "not 27 or 28" in response.json()["error"]


def test_it_never_sends_a_transaction_that_would_revert(proposal):
    before = _relayer_nonce()

    with pytest.raises(ContractError) as raised:
        portal_chain.registry().finalize(proposal.chain_proposal_id)

    assert raised.value.name == "QuorumVoteProposalNotExpired"
    assert _relayer_nonce() == before


def test_it_refuses_a_clinician_finalizing_on_the_proposal_page(clinician, proposal):
    client = Client()
    client.force_login(clinician)
    before = _relayer_nonce()

    for _ in range(3):
        response = client.post(
            f"/proposals/{proposal.chain_proposal_id}/", {"action": "finalize"}, follow=True
        )
        assert "only the admin of an active hospital member can finalize" in response.text

    assert _relayer_nonce() == before


def test_it_stops_relaying_for_a_member_past_its_hourly_budget(
    member_admin, proposal, consortium, applicant, settings
):
    lakeside = other_applicant(1, "Lakeside Hospital", "lakeside-admin")
    second = services.admission_sponsor(sponsor=_founder(consortium, 1), applicant=lakeside)
    settings.RELAY_PER_HOUR = 1
    cache.clear()
    first = _vote(
        member_admin, proposal, _vote_signature(member_admin, proposal, consortium[0].key)
    )
    before = _relayer_nonce()

    refused = _vote(member_admin, second, _vote_signature(member_admin, second, consortium[0].key))

    assert first.status_code == 200, first.json()
    assert refused.status_code == 429
    assert "this hour" in refused.json()["error"]
    assert _relayer_nonce() == before


def test_it_relays_a_signature_only_to_the_contract_it_was_signed_for(consortium):
    from chain import eip712
    from portal.core import relay
    from portal.core.exceptions import ServiceError

    mary = _founder(consortium, 0)
    typed = relay.typed_data("ProposeRemoval", {"memberId": 2}, signer=mary.governance_address)
    assert typed["domain"]["verifyingContract"] == portal_chain.registry().address
    elsewhere = {
        **typed,
        "domain": {**typed["domain"], "verifyingContract": mary.governance_address},
    }
    before = _relayer_nonce()

    with pytest.raises(ServiceError) as raised:
        relay.send(
            elsewhere,
            eip712.sign_typed(consortium[0].key, elsewhere),
            signer=mary.governance_address,
        )

    assert raised.value.code == "wrong_contract"
    assert _relayer_nonce() == before


def test_it_builds_no_typed_data_for_a_contract_it_does_not_follow(consortium):
    from portal.core import relay
    from portal.core.exceptions import ServiceError

    message = {"roundId": 1, "memberId": 1, "nodeId": "0x" + "11" * 32}
    with pytest.raises(ServiceError) as raised:
        relay.typed_data("Update", {**message, "updateHash": "0x" + "22" * 32, "sampleCount": 3})
    assert raised.value.code == "unknown_contract" and "TrainingRounds" in raised.value.message
