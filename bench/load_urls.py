"""portal.urls plus the load bench's baseline: a bare Django view that reads as many rows
from the same PostgreSQL as the largest API list (the 50-dataset catalogue) and returns
them as JSON, with no authentication, permission, serializer or chain call."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, include, path

BARE_ROWS = 50


def bare(request: HttpRequest) -> JsonResponse:
    from portal.datasets.models import Dataset

    rows = Dataset.objects.order_by("created_at").values(
        "id", "title", "modality", "instances", "status", "created_at"
    )[:BARE_ROWS]
    return JsonResponse(list(rows), safe=False)


urlpatterns: list[URLPattern | URLResolver] = [
    path("bench/bare/", bare),
    path("", include("portal.urls")),
]
handler400 = "portal.core.apis.bad_request"
handler500 = "portal.core.apis.server_error"
