from __future__ import annotations

from portal.celery import medchain_task


@medchain_task("core.chain_sync")
def chain_sync() -> int:
    from portal.core.sync import chain_sync_run

    return chain_sync_run().processed
