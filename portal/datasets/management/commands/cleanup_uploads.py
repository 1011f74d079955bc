from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from portal.datasets.services import uploads_cleanup


class Command(BaseCommand):
    help = "Discard dataset uploads past their expiry: their chunks, version and grants."

    def handle(self, *args: Any, **options: Any) -> None:
        count = uploads_cleanup()
        self.stdout.write(f"discarded {count} abandoned upload(s)")
