"""The portal's routes as the URL resolver knows them, so a test that walks "every route"
covers one added later without anyone remembering to list it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.urls import URLPattern, URLResolver, get_resolver

# Methods a test calls; OPTIONS and HEAD answer for every view alike.
METHODS = ("get", "post", "put", "patch", "delete")


def routes(
    patterns: list[URLPattern | URLResolver] | None = None, prefix: str = ""
) -> Iterator[tuple[str, URLPattern]]:
    """Each route's full text (``api/v1/datasets/<uuid:dataset_id>/``) and its pattern."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, route)
        else:
            yield route, pattern


def fill(route: str, value: Callable[[str, str], str | None]) -> str:
    """The path of `route`, each ``<converter:name>`` replaced by ``value(converter, name)``."""
    path = route
    while "<" in path:
        start = path.index("<")
        end = path.index(">", start)
        converter, _, name = path[start + 1 : end].rpartition(":")
        found = value(converter or "str", name)
        assert found is not None, f"no value for <{name}> in {route}: add one to the test"
        path = path[:start] + found + path[end + 1 :]
    return "/" + path


def methods(pattern: URLPattern) -> list[str]:
    """The HTTP methods a class-based view answers (a function view: GET and POST)."""
    view = getattr(pattern.callback, "view_class", None)
    if view is None:
        return ["get", "post"]
    return [m for m in METHODS if m in view.http_method_names and hasattr(view, m)]
