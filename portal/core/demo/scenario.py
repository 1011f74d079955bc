"""What the demo does, as the consortium's people would: the operator deploys
the registry with three founders, they admit a fourth by vote, admins and a
governor get their logins, St. Mary's registers a training node and gives its
data steward a Data delegate key, and the steward uploads synthetic CT
phantoms with `upload_dataset` over the HTTP API. Everything goes through the
portal's services and commands; members sign with their demo keystores
(portal/core/demokeys.py) as they would in their wallets. Each step can
run again on a var/ that already has its result.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from eth_account import Account

from chain import eip712, uid_secret
from portal.consortium import services
from portal.consortium.delegates import delegate_set
from portal.consortium.models import Delegate, Member, Proposal, Staff
from portal.core import demokeys
from portal.core.sync import chain_sync_run
from portal.datasets.models import AccessLog, Dataset, DatasetVersion
from portal.nodes import services as nodes
from portal.nodes.agent.keystore import NodeIdentity, NodeKeystore
from portal.nodes.agent.tasks import fetch_and_verify
from portal.nodes.models import Node
from training.ingest.phantoms import write_ct_dataset

FOUNDERS = [
    ("St. Mary's Hospital", "mary"),
    ("City General", "city"),
    ("Northside Clinic", "northside"),
]
APPLICANT = ("Harbour Hospital", "harbour")
# Every demo login's password (the admins', the steward's, the governor's).
LOGIN_PASSWORD = "medchain-demo"
NODE_PASSWORD = "medchain-demo-node"
STEWARD = "mary-steward"
# St. Mary's clinician: signs in with a password (no second factor, like the steward).
CLINICIAN = "mary-clinician"
# Watches the consortium in /admin/ (view only); like the admins, sets up its TOTP at first sign-in.
GOVERNOR = "governor"
# Fixed, so a second run finds it; --fresh forgets the chain that anchored it.
DATASET_ID = uuid.UUID("6d656463-6861-4e00-8000-64656d6f0001")
DATASET_TITLE = "St. Mary's phantom CT (demo)"
SLICES = 8


class ScenarioError(Exception):
    """A step did not reach its outcome; the message says which and where to look."""


@dataclass
class NodeSetup:
    node_id: str
    directory: Path
    token_file: Path
    password_file: Path


def _data_key() -> str:
    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "0x" + public.hex()


class Scenario:
    def __init__(self, var: Path) -> None:
        self.var = var
        self.index = Path(settings.DEMO_KEYSTORE_DIR) / "index.json"

    def account(self, short: str) -> tuple[str, str]:
        """A demo person's key (address, private key), created once in its demo keystore."""
        known = json.loads(self.index.read_text()) if self.index.exists() else {}
        if short not in known:
            account = Account.create()
            services.demo_keystore_save(address=account.address, private_key=account.key.hex())
            known[short] = account.address
            self.index.parent.mkdir(parents=True, exist_ok=True)
            self.index.write_text(json.dumps(known, indent=2))
        key = demokeys.load(known[short])
        assert key is not None  # just saved, and the demo runs only with demo keystores on
        return known[short], key

    def deploy(self) -> None:
        founders = [
            {
                "name": name,
                "address": self.account(short)[0],
                "data_key": _data_key(),
                "contact_email": f"admin@{short}.example",
                "role": 1,
            }
            for name, short in FOUNDERS
        ]
        path = self.var / "demo-founders.json"
        path.write_text(json.dumps(founders, indent=2))
        call_command("deploy_contracts", founders=str(path), stdout=io.StringIO())
        chain_sync_run()

    def admit_applicant(self) -> None:
        name, short = APPLICANT
        address, key = self.account(short)
        member = Member.objects.filter(governance_address=address).first()
        if member is None:
            data_key = _data_key()
            typed = services.application_typed_data(
                governance_address=address, role=1, data_public_key=data_key, name=name
            )
            member = services.application_submit(
                name=name,
                contact_email=f"admin@{short}.example",
                governance_address=address,
                data_public_key=data_key,
                signature="0x" + eip712.sign_typed(key, typed).hex(),  # the applicant's wallet
            )
        if member.status == Member.Status.ACTIVE:
            return
        founders = list(Member.objects.filter(founding=True).order_by("pk"))
        proposal = Proposal.objects.filter(subject=member).order_by("-pk").first()
        if proposal is None or proposal.status != Proposal.Status.OPEN:
            proposal = services.admission_sponsor(sponsor=founders[0], applicant=member)
        for founder in founders:
            proposal.refresh_from_db()
            if proposal.status != Proposal.Status.OPEN:
                break
            if not proposal.votes.filter(voter=founder).exists():
                proposal = services.vote_cast(voter=founder, proposal=proposal, support=True)
        member.refresh_from_db()
        if member.status != Member.Status.ACTIVE:
            raise ScenarioError(f"{name} was not admitted ({member.get_status_display()})")

    def logins(self) -> None:
        """The admins', St. Mary's clinician's and the governor's logins."""
        users = get_user_model().objects
        for name, short in [*FOUNDERS, APPLICANT]:
            username = f"{short}-admin"
            if users.filter(username=username).exists():
                continue
            services.staff_create(
                member=Member.objects.get(name=name),
                username=username,
                password=LOGIN_PASSWORD,
                email=f"admin@{short}.example",
                role=Staff.Role.ADMIN,
            )
        if not users.filter(username=CLINICIAN).exists():
            services.staff_create(
                member=Member.objects.get(name=FOUNDERS[0][0]),
                username=CLINICIAN,
                password=LOGIN_PASSWORD,
                email=f"clinician@{FOUNDERS[0][1]}.example",
                role=Staff.Role.CLINICIAN,
            )
        if not users.filter(username=GOVERNOR).exists():
            services.governor_create(
                username=GOVERNOR, password=LOGIN_PASSWORD, email="governor@consortium.example"
            )

    def register_node(self) -> NodeSetup:
        """St. Mary's first node: its keystore (what `node_init` makes on the node's
        machine), its registration signed by St. Mary's, and a fresh API token."""
        node_dir = self.var / "nodes" / "mary-node-1"
        if not (node_dir / "node.json").exists():
            NodeKeystore.create(node_dir, NODE_PASSWORD)
        password_file = node_dir.parent / "password"
        password_file.write_text(NODE_PASSWORD)
        identity = NodeIdentity.load(node_dir)
        node = Node.objects.filter(node_id=identity.node_id).first()
        if node is None:
            node = nodes.node_register(
                member=Member.objects.get(name=FOUNDERS[0][0]),
                node_id=identity.node_id,
                signer_address=identity.signer_address,
                data_public_key=identity.data_public_key,
                label="St. Mary's node 1",
            )
        token_file = node_dir.parent / "mary-node-1.token"
        token_file.write_text(nodes.node_token_issue(node=node))
        os.chmod(token_file, 0o600)
        return NodeSetup(node.node_id, node_dir, token_file, password_file)

    def data_steward(self) -> str:
        """St. Mary's steward login, and a Data delegate key that signs its manifests and the
        grants to its own nodes (the steward never holds the governance key). Returns the
        delegate's address."""
        name, short = FOUNDERS[0]
        member = Member.objects.get(name=name)
        if not get_user_model().objects.filter(username=STEWARD).exists():
            services.staff_create(
                member=member,
                username=STEWARD,
                password=LOGIN_PASSWORD,
                email=f"steward@{short}.example",
                role=Staff.Role.STEWARD,
            )
        delegate, _ = self.account(f"{short}-data")
        if not member.delegates.filter(
            address=delegate, scope=Delegate.Scope.DATA, enabled=True
        ).exists():
            # St. Mary's admin signs the delegation (its demo keystore); the portal relays it.
            delegate_set(member=member, address=delegate, scope=Delegate.Scope.DATA)
        return delegate

    def make_phantoms(self) -> str:
        source = self.var / "demo-data" / FOUNDERS[0][1]
        # annotations.json is written last: without it the slices are rewritten, identically.
        if (source / "annotations.json").exists():
            return f"already in {source}"
        write_ct_dataset(source, profile="hospital-a", count=SLICES, seed=0)
        return f"{SLICES} slices in {source}"

    @staticmethod
    def uploaded() -> bool:
        return (
            Dataset.objects.filter(pk=DATASET_ID).exclude(status=Dataset.Status.UPLOADING).exists()
        )

    def upload_dataset(self, portal_url: str, rpc_url: str, delegate: str) -> str | None:
        """What a hospital's steward runs: `upload_dataset` against the running web server,
        with the steward's own Data delegate keystore alone. Returns what it printed on stderr."""
        data = self.var / "demo-data"
        token_file = data / f"{STEWARD}.token"
        token_file.write_text(_api_token(portal_url, STEWARD, LOGIN_PASSWORD))
        os.chmod(token_file, 0o600)
        password_file = data / "keystore-password"
        password_file.write_text(demokeys.PASSWORD)
        # The admin derives the hospital's UID secret once, with the governance key, and hands
        # the file to its stewards (docs/ingest.md); the browser derives the same bytes.
        mary = Member.objects.get(name=FOUNDERS[0][0])
        secret_file = data / f"{FOUNDERS[0][1]}-uid-secret.bin"
        governance_key = demokeys.load(mary.governance_address)
        if governance_key is None:
            raise ScenarioError(f"no demo keystore for {mary.name}'s governance address")
        secret_file.write_bytes(uid_secret.derive(governance_key))
        errors = io.StringIO()
        call_command(
            "upload_dataset",
            str(data / FOUNDERS[0][1]),
            portal=portal_url,
            token_file=str(token_file),
            keystore=str(demokeys.path(delegate)),
            password_file=str(password_file),
            uid_secret_file=str(secret_file),
            title=DATASET_TITLE,
            dataset_id=str(DATASET_ID),
            work_dir=str(data / f"upload-{FOUNDERS[0][1]}"),
            rpc_url=rpc_url,
            no_progress=True,
            stdout=io.StringIO(),
            stderr=errors,
        )
        return errors.getvalue().strip() or None

    @staticmethod
    def checked_in(node_id: str) -> bool:
        node = Node.objects.get(node_id=node_id)
        return node.last_check_in is not None and node.is_online

    @staticmethod
    def decrypted(node_id: str) -> bool:
        """Whether the node decrypted the demo dataset; a refusal is an error with its reason."""
        by_node = AccessLog.objects.filter(
            dataset_id=DATASET_ID, node__node_id=node_id, what="dataset"
        )
        refused = by_node.filter(action=AccessLog.Action.REFUSE).first()
        if refused is not None:
            raise ScenarioError(f"St. Mary's node refused the demo dataset: {refused.detail}")
        return by_node.filter(action=AccessLog.Action.DECRYPT).exists()

    @staticmethod
    def ask_node_to_fetch(node_id: str) -> None:
        """Ask again after an earlier run stopped before the node was done (it is idempotent)."""
        queue = Node.objects.get(node_id=node_id).queue
        fetch_and_verify.apply_async(args=[str(DATASET_ID), None], queue=queue)

    @staticmethod
    def dataset_summary() -> tuple[Dataset, DatasetVersion, str]:
        """The demo dataset, its newest anchored version and the node that decrypted it."""
        dataset = Dataset.objects.get(pk=DATASET_ID)
        versions = dataset.versions.exclude(state=DatasetVersion.State.UPLOADING)
        shown = versions.order_by("-number").first()
        assert shown is not None  # anchored before the node could decrypt it
        log = (
            AccessLog.objects.filter(dataset=dataset, action=AccessLog.Action.DECRYPT)
            .select_related("node")
            .first()
        )
        node = str(log.node) if log is not None and log.node is not None else "the node"
        return dataset, shown, node


def _api_token(base: str, username: str, password: str) -> str:
    """The steward's API token, asked of the portal as a hospital's script would."""
    response = requests.post(
        f"{base}/api/v1/auth/token/",
        json={"username": username, "password": password},
        timeout=30,
    )
    if not response.ok:
        raise ScenarioError(f"the portal refused {username}'s token: {response.text[:200]}")
    return str(response.json()["token"])
