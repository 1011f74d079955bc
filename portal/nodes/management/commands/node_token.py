from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.core.exceptions import ServiceError
from portal.nodes.models import Node
from portal.nodes.services import node_token_issue


class Command(BaseCommand):
    help = "Issue a new API token for a registered node (any previous one stops working)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node_id", help="0x + 64 hex digits, as printed by node_init")
        parser.add_argument("--out", type=Path, help="write the token to this file (mode 600)")

    def handle(self, *args: Any, **options: Any) -> None:
        node = Node.objects.filter(node_id=options["node_id"].lower()).first()
        if node is None:
            raise CommandError(
                f"no node {options['node_id']} is mirrored: register it on chain and sync first"
            )
        try:
            token = node_token_issue(node=node)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        out: Path | None = options["out"]
        if out is None:
            self.stdout.write(token)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(token + "\n")
        os.chmod(out, 0o600)
        self.stdout.write(f"token for {node} written to {out}")
