"""The portal's URLs plus one view that fails, for the 500 page's browser test
(tests/e2e/test_browser_error_pages.py points ROOT_URLCONF here)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.urls import handler400, handler500
from portal.urls import urlpatterns as portal_urlpatterns


def fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a fault the portal did not foresee")


urlpatterns = [path("fails/", fails), *portal_urlpatterns]
__all__ = ["handler400", "handler500", "urlpatterns"]
