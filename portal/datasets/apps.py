from __future__ import annotations

from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "portal.datasets"
    label = "datasets"
    verbose_name = "Encrypted datasets"

    def ready(self) -> None:
        from portal.datasets import handlers  # noqa: F401  (registers chain event handlers)
