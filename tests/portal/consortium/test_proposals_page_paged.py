"""The proposals page shows the decided proposals one page at a time, newest first, with
links between the pages (issue 10: every list that can grow is paged); open ones stay whole."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.consortium.models import Proposal, Staff
from portal.core.pagination import HTML_PAGE_SIZE
from tests.factories import ActiveMemberFactory, ProposalFactory, StaffFactory, signed_in

pytestmark = pytest.mark.django_db


def test_decided_proposals_are_paged_and_open_ones_all_shown():
    member = ActiveMemberFactory()
    decided = [
        ProposalFactory(status=Proposal.Status.ACCEPTED, sponsor=member)
        for _ in range(HTML_PAGE_SIZE + 2)
    ]
    open_ones = [ProposalFactory(sponsor=member) for _ in range(3)]
    client = signed_in(StaffFactory(member=member, role=Staff.Role.CLINICIAN).user)
    url = reverse("proposals")

    first = client.get(url)
    assert first.status_code == 200
    assert len(first.context["open_proposals"]) == len(open_ones)
    shown = [p.chain_proposal_id for p in first.context["decided_proposals"]]
    newest = sorted((p.chain_proposal_id for p in decided), reverse=True)
    assert shown == newest[:HTML_PAGE_SIZE]
    assert b'href="?page=2" rel="next"' in first.content
    assert f"Page 1 of 2 ({HTML_PAGE_SIZE + 2} in all)".encode() in first.content

    second = client.get(url, {"page": 2})
    assert [p.chain_proposal_id for p in second.context["decided_proposals"]] == newest[-2:]
    assert len(second.context["open_proposals"]) == len(open_ones)
    assert b'rel="prev"' in second.content and b'rel="next"' not in second.content
    assert client.get(url, {"page": 3}).status_code == 404


def test_a_short_list_has_no_pager():
    member = ActiveMemberFactory()
    ProposalFactory(status=Proposal.Status.REJECTED, sponsor=member)
    client = signed_in(StaffFactory(member=member, role=Staff.Role.CLINICIAN).user)

    page = client.get(reverse("proposals"))

    assert page.status_code == 200 and b'data-testid="pager"' not in page.content
