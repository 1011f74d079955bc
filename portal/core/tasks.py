from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task

F = TypeVar("F", bound=Callable[..., Any])


def medchain_task(name: str, **options: Any) -> Callable[[F], Any]:
    """The project's one task decorator: acknowledged only after the work is
    done, redelivered if the worker dies. Tasks take primary keys and are
    idempotent, so a redelivery changes nothing."""
    return shared_task(
        name=name, acks_late=True, reject_on_worker_lost=True, ignore_result=True, **options
    )


@medchain_task("core.chain_sync")
def chain_sync() -> int:
    from portal.core.sync import chain_sync_run

    return chain_sync_run().processed
