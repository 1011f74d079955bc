from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal.core.apis import HealthApi, api_not_found

api_v1: list[URLPattern | URLResolver] = [
    path("health/", HealthApi.as_view(), name="api-health"),
    path("", include("portal.consortium.api_urls")),
    path("", include("portal.nodes.api_urls")),
    path("", include("portal.datasets.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view loads its start-up script as a file: no inline script under the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", api_not_found, name="api-not-found"),
    path("health", HealthApi.as_view(), name="health"),
    path("", include("portal.consortium.urls")),
    path("", include("portal.nodes.urls")),
    path("", include("portal.datasets.urls")),
]

handler400 = "portal.core.apis.bad_request"
handler500 = "portal.core.apis.server_error"
