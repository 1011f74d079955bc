"""Dataset tasks on the portal's queue. A node's `datasets.fetch_and_verify` is in
portal/nodes/agent/tasks.py."""

from __future__ import annotations

from portal.celery import medchain_task
from portal.datasets.services import uploads_cleanup


@medchain_task("datasets.cleanup_uploads")
def cleanup_uploads() -> int:
    return uploads_cleanup()
