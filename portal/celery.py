"""The Celery app. Portal tasks run on the `portal` queue; each hospital node
consumes only its own `node.<node-id>` queue (see portal/nodes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery, shared_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("medchain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A node's tasks live apart from its app's portal-side tasks.py (portal/nodes/agent/).
app.autodiscover_tasks(["portal.nodes.agent"])

F = TypeVar("F", bound=Callable[..., Any])


def medchain_task(name: str, **options: Any) -> Callable[[F], Any]:
    """The project's one task decorator: acknowledged only after the work is
    done, redelivered if the worker dies. Tasks take primary keys and are
    idempotent, so a redelivery changes nothing. It lives here, beside the app
    and apart from any app's models, because a node's tasks use it too."""
    return shared_task(
        name=name, acks_late=True, reject_on_worker_lost=True, ignore_result=True, **options
    )


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
