from __future__ import annotations

from django.apps import AppConfig


class ConsortiumConfig(AppConfig):
    name = "portal.consortium"
    label = "consortium"
    verbose_name = "Consortium"

    def ready(self) -> None:
        from portal.consortium import handlers  # noqa: F401  (registers chain event handlers)
