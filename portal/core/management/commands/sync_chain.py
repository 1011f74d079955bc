from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.core.sync import chain_sync_run


class Command(BaseCommand):
    help = "Mirror new chain events into the database (once, or every --interval seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep following the chain")
        parser.add_argument("--interval", type=float, default=2.0)

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            result = chain_sync_run()
            if result.error:
                self.stderr.write(f"sync failed: {result.error}")
            else:
                note = " (rewound after a reorg)" if result.rewound else ""
                self.stdout.write(f"{result.processed} events mirrored, head {result.head}{note}")
            if not options["loop"]:
                return
            time.sleep(options["interval"])
