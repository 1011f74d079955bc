"""The portal's node tasks, on its own queue. What runs on a node's queue is in
portal/nodes/agent/tasks.py."""

from __future__ import annotations

from django.conf import settings

from portal.celery import medchain_task
from portal.nodes.agent.tasks import check_in
from portal.nodes.models import Node


@medchain_task("nodes.request_check_ins")
def request_check_ins() -> int:
    # Only nodes with a token can answer; a request older than one period is dropped.
    nodes = Node.objects.filter(active=True, user__isnull=False).only("node_id")
    count = 0
    for node in nodes:
        check_in.apply_async(
            args=[node.node_id], queue=node.queue, expires=settings.NODE_CHECK_IN_SECONDS
        )
        count += 1
    return count
