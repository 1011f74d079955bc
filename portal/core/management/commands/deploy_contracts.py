from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from eth_utils import to_checksum_address

from chain.consortium_registry import ConsortiumRegistry
from chain.consortium_registry import Founder as ChainFounder
from chain.dataset_registry import DatasetRegistry
from chain.deployment import DeploymentRecord
from chain.errors import ChainUnavailable
from portal.consortium import services as consortium
from portal.consortium.models import Role
from portal.core import chain as portal_chain
from portal.core.models import ContractDeployment


def _founders(options: dict[str, Any]) -> list[dict[str, Any]]:
    founders: list[dict[str, Any]] = []
    if options["founders"]:
        founders.extend(json.loads(Path(options["founders"]).read_text()))
    for spec in options["founder"] or []:
        parts = spec.split(",")
        if len(parts) not in (3, 4):
            raise CommandError(f"--founder wants NAME,ADDRESS,DATA_KEY[,EMAIL], got {spec!r}")
        founders.append(
            {
                "name": parts[0],
                "address": parts[1],
                "data_key": parts[2],
                "contact_email": parts[3] if len(parts) == 4 else "admin@invalid",
            }
        )
    if not founders:
        raise CommandError("name the founding members: --founders FILE.json or --founder ...")
    return founders


class Command(BaseCommand):
    help = (
        "Deploy the ConsortiumRegistry with its founding members, then the DatasetRegistry "
        "that reads it, on the chain at CHAIN_RPC_URL and record their addresses. "
        "FILE.json is a list of "
        '{"name", "address", "data_key", "contact_email", "role"} objects.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--founders", help="JSON file listing the founding members")
        parser.add_argument(
            "--founder", action="append", help="NAME,ADDRESS,DATA_KEY[,EMAIL] (repeatable)"
        )
        parser.add_argument("--quorum-bps", type=int, default=5000, help="yes-votes must exceed")
        parser.add_argument("--voting-period", type=int, default=7 * 24 * 3600, help="seconds")
        parser.add_argument(
            "--replace", action="store_true", help="deploy anew even if one is recorded"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        founders = _founders(options)
        try:
            client = portal_chain.client()
            chain_id = client.chain_id
        except ChainUnavailable as exc:
            raise CommandError(f"cannot reach the chain: {exc}") from exc
        existing = ContractDeployment.objects.filter(
            name=portal_chain.REGISTRY, chain_id=chain_id
        ).first()
        if existing is not None and not options["replace"]:
            if client.w3.eth.get_code(to_checksum_address(existing.address)):
                self.stdout.write(f"already deployed: {existing} (use --replace to redeploy)")
                self._add_datasets(client, existing)
                self._write_record(chain_id)
                return
            self.stdout.write(f"{existing} has no code on this chain any more: redeploying")
        start_block = client.head() + 1
        registry = ConsortiumRegistry.deploy(
            client,
            founders=[
                ChainFounder(
                    governance=f["address"],
                    role=int(f.get("role", Role.HOSPITAL)),
                    data_key=f["data_key"],
                    name_hash=consortium.name_hash(f["name"]),
                )
                for f in founders
            ],
            quorum_bps=options["quorum_bps"],
            voting_period=options["voting_period"],
        )
        datasets = DatasetRegistry.deploy(client, registry_address=registry.address)
        with transaction.atomic():
            ContractDeployment.objects.update_or_create(
                name=portal_chain.REGISTRY,
                chain_id=chain_id,
                defaults={"address": registry.address, "block_number": start_block},
            )
            ContractDeployment.objects.update_or_create(
                name=portal_chain.DATASETS,
                chain_id=chain_id,
                defaults={"address": datasets.address, "block_number": start_block},
            )
            for f in founders:
                consortium.founding_member_record(
                    name=f["name"],
                    contact_email=f.get("contact_email", "admin@invalid"),
                    governance_address=f["address"],
                    data_public_key=f["data_key"],
                    role=int(f.get("role", Role.HOSPITAL)),
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"ConsortiumRegistry at {registry.address} on chain {chain_id} "
                f"with {len(founders)} founding members; DatasetRegistry at {datasets.address}"
            )
        )
        self._write_record(chain_id)

    def _write_record(self, chain_id: int) -> None:
        """The record hospitals pin on their nodes and uploaders (copied there out of band)."""
        found = {d.name: d.address for d in ContractDeployment.objects.filter(chain_id=chain_id)}
        record = DeploymentRecord(
            chain_id=chain_id,
            registry=found[portal_chain.REGISTRY],
            datasets=found[portal_chain.DATASETS],
        )
        path = Path(settings.CHAIN_DEPLOYMENT_RECORD)
        record.write(path)
        self.stdout.write(f"deployment record written to {path}")

    def _add_datasets(self, client: Any, registry: ContractDeployment) -> None:
        """A registry deployed before the DatasetRegistry existed gets one beside it."""
        if ContractDeployment.objects.filter(
            name=portal_chain.DATASETS, chain_id=registry.chain_id
        ).exists():
            return
        start_block = client.head() + 1
        datasets = DatasetRegistry.deploy(client, registry_address=registry.address)
        ContractDeployment.objects.create(
            name=portal_chain.DATASETS,
            chain_id=registry.chain_id,
            address=datasets.address,
            block_number=start_block,
        )
        self.stdout.write(self.style.SUCCESS(f"DatasetRegistry at {datasets.address} added"))
