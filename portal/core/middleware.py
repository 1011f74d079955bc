from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from training.crypto import CHUNK_SIZE

#: Bytes of manifest JSON per chunk of a dataset, with room for indentation.
MANIFEST_BYTES_PER_CHUNK = 256


def _manifest_cap() -> int | None:
    """A new upload's body lists every chunk of the dataset: it grows with DATASET_MAX_BYTES."""
    chunks = settings.DATASET_MAX_BYTES // CHUNK_SIZE + 1
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) + MANIFEST_BYTES_PER_CHUNK * chunks


#: Routes whose bodies have a cap of their own (None: the view reads a stream and checks it).
ROUTE_CAPS: dict[str, Callable[[], int | None]] = {
    "api-dataset-upload-chunk": lambda: None,
    "api-dataset-upload-create": _manifest_cap,
}


class RequestBodyLimitMiddleware:
    """Refuse a body over DATA_UPLOAD_MAX_MEMORY_SIZE (or its route's cap) before anything
    parses it.

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
        if limit is not None and declared > limit:
            limit = _route_cap(request, limit)
            if limit is not None and declared > limit:
                return _too_large(request, declared, limit)
        return self.get_response(request)


def _route_cap(request: HttpRequest, default: int) -> int | None:
    try:
        name = resolve(request.path_info).url_name
    except Resolver404:
        return default
    cap = ROUTE_CAPS.get(name or "")
    return default if cap is None else cap()


def _too_large(request: HttpRequest, size: int, limit: int) -> HttpResponse:
    message = (
        f"the request body is {size} bytes, more than the {limit} this portal accepts: "
        "send less (dataset ciphertext goes through the chunk-upload route)"
    )
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message, "code": "request_too_large"}, status=413)
    return render(request, "413.html", {"message": message}, status=413)
