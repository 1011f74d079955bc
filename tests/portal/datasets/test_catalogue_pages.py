"""The catalogue page shows one page of datasets at a time, with links between the pages
(issue 10: every list that can grow is paged, the portal's pages as the API)."""

from __future__ import annotations

import pytest

from portal.consortium.models import Staff
from portal.core.pagination import HTML_PAGE_SIZE
from tests.factories import (
    ActiveMemberFactory,
    DatasetFactory,
    DatasetVersionFactory,
    StaffFactory,
    signed_in,
)

pytestmark = pytest.mark.django_db


def test_the_catalogue_page_is_paged_with_links():
    member = ActiveMemberFactory()
    for _ in range(HTML_PAGE_SIZE + 1):
        DatasetVersionFactory(dataset=DatasetFactory(owner=member))
    client = signed_in(StaffFactory(member=member, role=Staff.Role.CLINICIAN).user)

    first = client.get("/datasets/")
    assert first.status_code == 200
    assert first.content.count(b'href="/datasets/') - first.content.count(b"/datasets/upload/") >= (
        HTML_PAGE_SIZE
    )
    assert len(first.context["rows"]) == HTML_PAGE_SIZE
    assert b'href="?page=2" rel="next"' in first.content
    assert f"Page 1 of 2 ({HTML_PAGE_SIZE + 1} in all)".encode() in first.content

    second = client.get("/datasets/", {"page": 2})
    assert len(second.context["rows"]) == 1
    assert b'href="?page=1" rel="prev"' in second.content and b'rel="next"' not in second.content
    assert client.get("/datasets/", {"page": 3}).status_code == 404


def test_the_catalogue_page_reads_no_manifest_and_the_same_queries_for_any_page_length():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    member = ActiveMemberFactory()
    client = signed_in(StaffFactory(member=member, role=Staff.Role.CLINICIAN).user)

    def catalogue_queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/datasets/").status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    DatasetVersionFactory(dataset=DatasetFactory(owner=member))
    one = catalogue_queries()
    for number in (1, 2):
        DatasetVersionFactory(dataset=DatasetFactory(owner=member), number=number)
    for _ in range(10):
        DatasetVersionFactory(dataset=DatasetFactory(owner=member))
    many = catalogue_queries()

    assert len(one) == len(many)
    assert not [sql for sql in many if '."manifest"' in sql]
