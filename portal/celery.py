"""The Celery app. Portal tasks run on the `portal` queue; each hospital node
consumes only its own `node.<node-id>` queue (see portal/nodes)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("medchain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        settings.CELERY_BEAT_SCHEDULE_SECONDS,
        sender.signature("core.chain_sync"),
        name="chain sync",
    )
    sender.add_periodic_task(
        float(settings.NODE_CHECK_IN_SECONDS),
        sender.signature("nodes.request_check_ins"),
        name="ask nodes to check in",
    )
    sender.add_periodic_task(
        3600.0, sender.signature("datasets.cleanup_uploads"), name="delete abandoned uploads"
    )
