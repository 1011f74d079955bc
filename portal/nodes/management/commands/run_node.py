from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain.client import ChainClient
from chain.deployment import DeploymentRecord, RecordError
from chain.errors import ChainUnavailable
from portal.nodes.agent.config import NODE_RPC_ENV
from portal.nodes.agent.keystore import KeystoreError, NodeIdentity, NodeKeystore, password_from_env


def _check_chain(rpc_url: str | None, record_path: Path) -> None:
    """Refuse to start without the node's own chain connection and pinned contract addresses."""
    if not rpc_url:
        raise CommandError(
            f"the node needs a read-only RPC URL of the chain: --rpc-url or {NODE_RPC_ENV} "
            "(it checks every anchor and grant there, never on the portal's word)"
        )
    try:
        record = DeploymentRecord.load(record_path)
    except RecordError as exc:
        raise CommandError(f"{exc}: give --chain-record or MEDCHAIN_CHAIN_RECORD") from None
    try:
        chain_id = ChainClient.from_url(rpc_url, relayer_key=None, timeout=10).chain_id
    except (ChainUnavailable, OSError, ValueError) as exc:
        raise CommandError(f"cannot reach the chain at --rpc-url: {exc}") from None
    if chain_id != record.chain_id:
        raise CommandError(
            f"--rpc-url follows chain {chain_id}, but the deployment record {record_path} is "
            f"for chain {record.chain_id}"
        )


class Command(BaseCommand):
    help = (
        "Run this machine as a hospital node: a Celery worker that consumes only "
        "node.<node-id>, with no database, talking to the portal through its REST API."
    )

    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keystore", type=Path, default=os.environ.get("MEDCHAIN_NODE_KEYSTORE")
        )
        parser.add_argument("--portal-url", default=os.environ.get("MEDCHAIN_PORTAL_URL"))
        parser.add_argument(
            "--token-file", type=Path, default=os.environ.get("MEDCHAIN_NODE_TOKEN_FILE")
        )
        parser.add_argument(
            "--rpc-url",
            default=os.environ.get(NODE_RPC_ENV),
            help=f"a read-only RPC URL of the chain (or {NODE_RPC_ENV}): the node checks every "
            "anchor, owner and grant there, not on the portal's word",
        )
        parser.add_argument(
            "--chain-record",
            type=Path,
            default=None,
            help="the chain's deployment record (JSON: chain_id, registry, datasets) that pins "
            "the contract addresses; default MEDCHAIN_CHAIN_RECORD or var/chain-deployment.json",
        )
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: Any, **options: Any) -> None:
        keystore_dir, portal_url = options["keystore"], options["portal_url"]
        if not keystore_dir or not portal_url:
            raise CommandError(
                "--keystore and --portal-url (or their MEDCHAIN_* variables) are needed"
            )
        try:
            identity = NodeIdentity.load(keystore_dir)
            NodeKeystore.open(keystore_dir, password_from_env())  # fail now, not per task
        except KeystoreError as exc:
            raise CommandError(str(exc)) from exc
        token_file = options["token_file"]
        if token_file is None and not os.environ.get("MEDCHAIN_NODE_TOKEN"):
            raise CommandError("the node needs its API token: --token-file or MEDCHAIN_NODE_TOKEN")
        rpc_url = options["rpc_url"]
        record_path = Path(options["chain_record"] or settings.CHAIN_DEPLOYMENT_RECORD).resolve()
        _check_chain(rpc_url, record_path)
        env = dict(os.environ)
        env.update(
            {
                "MEDCHAIN_ROLE": "node",
                "MEDCHAIN_NODE_KEYSTORE": str(Path(keystore_dir).resolve()),
                "MEDCHAIN_PORTAL_URL": portal_url,
                NODE_RPC_ENV: rpc_url,
                "MEDCHAIN_CHAIN_RECORD": str(record_path),
                "DJANGO_SETTINGS_MODULE": "portal.settings",
            }
        )
        env.pop("DATABASE_URL", None)
        if token_file is not None:
            env["MEDCHAIN_NODE_TOKEN_FILE"] = str(Path(token_file).resolve())
        celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
        argv = [
            celery,
            "-A",
            "portal",
            "worker",
            "-Q",
            f"node.{identity.node_id}",
            "-n",
            f"node-{identity.node_id[2:14]}@%h",
            "--concurrency",
            str(options["concurrency"]),
            "--pool",
            "solo" if options["concurrency"] == 1 else "prefork",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            options["loglevel"],
        ]
        self.stdout.write(f"node {identity.node_id} consuming node.{identity.node_id}")
        sys.stdout.flush()
        os.execvpe(argv[0], argv, env)
