"""The proposals' API page reads plain rows (selectors.proposal_rows, proposal_votes) and
builds its entries without serializer fields, where the detail route serializes a model:
each list entry is what the proposal's own route answers, votes and all, in the order the
serializer lists them; the page's votes are read in one query, and none for no proposals."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from portal.consortium.apis import ProposalOutputSerializer
from portal.consortium.models import Proposal
from portal.consortium.selectors import proposal_votes
from tests.factories import (
    ActiveMemberFactory,
    MemberFactory,
    ProposalFactory,
    StaffFactory,
    VoteFactory,
)

pytestmark = pytest.mark.django_db

PROPOSALS = "/api/v1/proposals/"


def _entries(api: APIClient) -> list[dict[str, object]]:
    listed = api.get(PROPOSALS)
    assert listed.status_code == 200, listed.content
    return listed.json()["results"]  # type: ignore[no-any-return]


def test_each_entry_is_what_the_proposals_own_route_answers():
    viewer = ActiveMemberFactory()
    open_one = ProposalFactory(sponsor=None)
    for block, support in ((9, True), (3, False), (5, True)):
        VoteFactory(proposal=open_one, block_number=block, support=support)
    decided = ProposalFactory(
        kind=Proposal.Kind.ROTATION,
        status=Proposal.Status.ACCEPTED,
        new_governance_address="0x" + "ab" * 20,
        yes=2,
        no=1,
        decided_block=42,
        deadline=timezone.now().replace(microsecond=0) - timedelta(days=1),
    )
    VoteFactory(proposal=decided, voter=viewer, block_number=40)
    expired = ProposalFactory(
        kind=Proposal.Kind.REMOVAL, deadline=timezone.now() - timedelta(seconds=1)
    )
    api = APIClient()
    api.force_authenticate(StaffFactory(member=viewer).user)

    entries = _entries(api)

    assert [e["id"] for e in entries] == [
        expired.chain_proposal_id,
        decided.chain_proposal_id,
        open_one.chain_proposal_id,
    ]
    for entry, proposal in zip(entries, (expired, decided, open_one), strict=True):
        detail = api.get(f"{PROPOSALS}{proposal.chain_proposal_id}/")
        assert detail.status_code == 200, detail.content
        assert entry == detail.json()
        # the same JSON, key order included
        assert json.dumps(entry) == json.dumps(ProposalOutputSerializer(proposal).data)
    by_id = {e["id"]: e for e in entries}
    assert [v["block_number"] for v in by_id[open_one.chain_proposal_id]["votes"]] == [3, 5, 9]
    assert by_id[open_one.chain_proposal_id]["sponsor"] is None
    assert by_id[expired.chain_proposal_id]["is_open"] is False
    assert by_id[open_one.chain_proposal_id]["is_open"] is True
    assert by_id[decided.chain_proposal_id]["votes"][0]["voter"]["id"] == viewer.pk


def test_a_member_not_active_sees_its_own_proposals_as_rows_too():
    applicant = MemberFactory(status="proposed")
    own = ProposalFactory(subject=applicant)
    VoteFactory(proposal=own)
    ProposalFactory()
    api = APIClient()
    api.force_authenticate(StaffFactory(member=applicant).user)

    [entry] = _entries(api)

    assert entry == api.get(f"{PROPOSALS}{own.chain_proposal_id}/").json()


def test_a_pages_votes_are_one_query_and_no_proposals_none():
    first, second = ProposalFactory(), ProposalFactory()
    VoteFactory(proposal=first, block_number=7)
    VoteFactory(proposal=second, block_number=2)
    VoteFactory(proposal=second, block_number=1)

    with CaptureQueriesContext(connection) as queries:
        votes = proposal_votes([first.pk, second.pk])
        assert proposal_votes([]) == {}

    assert len(queries) == 1
    assert [v["block_number"] for v in votes[second.pk]] == [1, 2]
    assert [v["block_number"] for v in votes[first.pk]] == [7]
