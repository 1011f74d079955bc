from __future__ import annotations

from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "portal.nodes"
    label = "nodes"
    verbose_name = "Hospital nodes"

    def ready(self) -> None:
        from portal.nodes import handlers  # noqa: F401  (registers chain event handlers)
