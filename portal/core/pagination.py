"""Every list route answers one page: `{count, next, previous, results}`.

A list that can grow (datasets, proposals, members, nodes, staff, invitations, tokens,
grants, the access log) is never read whole into one answer; a client follows `next`
until it is null. The pages of the portal show the same pages with links between them.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import EmptyPage, InvalidPage, Page, PageNotAnInteger, Paginator
from django.http import Http404, HttpRequest
from rest_framework.pagination import PageNumberPagination

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: rows on one of the portal's pages (templates/_pager.html links the pages)
HTML_PAGE_SIZE = 50
#: the largest row offset a page may start at; a larger page number is past the last page
LARGEST_OFFSET = 2**62


class CountingPaginator(Paginator):  # type: ignore[type-arg]
    """Django's paginator, which reads the page first and counts the rows only when the
    page cannot tell: a page shorter than a full one is the last, so the count is the
    rows before it plus its own. Most lists fit on one page, and that saves a
    ``COUNT(*)`` query (a round trip to PostgreSQL) on every request."""

    def page(self, number: Any) -> Page:  # type: ignore[type-arg]
        number = _page_number(number, self.error_messages)
        bottom = (number - 1) * self.per_page
        if bottom + self.per_page > LARGEST_OFFSET:
            # Past any table's last page, and past what the database takes as an OFFSET
            # (a signed 64-bit integer): Django's EmptyPage, as for any page past the last.
            self.validate_number(number)
        rows = list(self.object_list[bottom : bottom + self.per_page])
        if 0 < len(rows) < self.per_page or (number == 1 and not rows):
            self.__dict__["count"] = bottom + len(rows)  # what cached_property `count` keeps
        elif not rows:
            self.validate_number(number)  # past the last page: Django's EmptyPage, counted
        return self._get_page(rows, number, self)  # type: ignore[attr-defined,no-any-return]


def _page_number(number: Any, messages: dict[str, Any]) -> int:
    """Django's ``Paginator.validate_number`` up to the part that needs the count."""
    try:
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        number = int(number)
    except (TypeError, ValueError):
        raise PageNotAnInteger(messages["invalid_page"]) from None
    if number < 1:
        raise EmptyPage(messages["min_page"])
    return number


class PortalPagination(PageNumberPagination):
    """`?page=` from 1 and `?page_size=` (100 unless asked, at most 1000)."""

    django_paginator_class = CountingPaginator
    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_size_query_description = (
        f"rows per page: {PAGE_SIZE} unless asked, at most {MAX_PAGE_SIZE}"
    )
    invalid_page_message = (
        "no page {page_number} ({message}): pages run from 1 to count / page_size, rounded up"
    )


def page_of(request: HttpRequest, rows: Any, *, size: int = HTML_PAGE_SIZE) -> Page:  # type: ignore[type-arg]
    """The page ``?page=`` of ``rows`` for one of the portal's pages (templates/_pager.html
    shows the links); a page that does not exist is a 404 that says which pages do."""
    number = request.GET.get("page") or 1
    try:
        return CountingPaginator(rows, size).page(number)
    except InvalidPage as exc:
        raise Http404(f"no page {number} ({exc}): pages run from 1") from exc
