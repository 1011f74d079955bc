from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.nodes.agent.keystore import KeystoreError, NodeKeystore, password_from_env


class Command(BaseCommand):
    help = (
        "Create a hospital node's keystore (signing key + X25519 data key) and print what "
        "its member registers on chain: node id, signing address, data public key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keystore", required=True, type=Path, help="directory to create")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            password = password_from_env()
        except KeystoreError:
            if not os.isatty(0):
                raise CommandError(
                    "set MEDCHAIN_NODE_PASSWORD or MEDCHAIN_NODE_PASSWORD_FILE"
                ) from None
            password = getpass.getpass("Password for the new node keystore: ")
            if password != getpass.getpass("Repeat it: "):
                raise CommandError("the passwords differ") from None
        try:
            keystore = NodeKeystore.create(options["keystore"], password)
        except KeystoreError as exc:
            raise CommandError(str(exc)) from exc
        identity = keystore.identity
        if options["json"]:
            self.stdout.write(json.dumps(identity.__dict__))
            return
        self.stdout.write(f"node keystore  {keystore.directory}")
        self.stdout.write(f"node id        {identity.node_id}")
        self.stdout.write(f"signer address {identity.signer_address}")
        self.stdout.write(f"data key       {identity.data_public_key}")
        self.stdout.write(
            "Register these three values for your member (portal Nodes page or "
            "POST /api/v1/nodes/register/), then issue the node's token and run "
            "`manage.py run_node`."
        )
