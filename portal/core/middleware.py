from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

#: Routes that read their body as a stream and enforce a cap of their own.
OWN_CAP = {"api-dataset-upload-chunk"}


class RequestBodyLimitMiddleware:
    """Refuse a body over DATA_UPLOAD_MAX_MEMORY_SIZE before anything parses it.

    Django enforces that setting only where it reads `request.body` or a form itself; DRF's
    parsers read the stream, so without this a 20 MB JSON body reached the JSON parser.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if limit is not None and declared > limit and not _has_own_cap(request):
            return _too_large(request, declared, limit)
        return self.get_response(request)


def _has_own_cap(request: HttpRequest) -> bool:
    try:
        return resolve(request.path_info).url_name in OWN_CAP
    except Resolver404:
        return False


def _too_large(request: HttpRequest, size: int, limit: int) -> HttpResponse:
    message = (
        f"the request body is {size} bytes, more than the {limit} this portal accepts: "
        "send less (dataset ciphertext goes through the chunk-upload route)"
    )
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message, "code": "request_too_large"}, status=413)
    return render(request, "413.html", {"message": message}, status=413)
