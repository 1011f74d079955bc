"""`make demo`: the whole consortium on this machine, on the embedded stack.

Starts an anvil node (state under var/), migrates, deploys the registry with
three founding hospitals, admits a fourth by vote, registers a training node
of the first hospital and gives it a data steward with a Data delegate key,
then runs a Celery worker, Celery beat, the ASGI web server and the hospital
node worker, each a child process in its own session (portal/core/supervise.py):
one that dies is restarted with back-off, one that keeps dying stops the demo,
and Ctrl-C, SIGTERM or SIGHUP stops them all by PID. Once the node
has checked in, the steward uploads synthetic CT phantoms the way a hospital
does (`upload_dataset` over the HTTP API) and the demo waits for the node to
fetch, verify and decrypt them. A second run reuses var/ (chain state,
database, the uploaded dataset) unless --fresh; --seed-only stops before the
servers, so it uploads nothing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from eth_account import Account
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from chain import eip712
from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from portal.core.supervise import Children, CrashLoop, StopSignals

FOUNDERS = [
    ("St. Mary's Hospital", "mary"),
    ("City General", "city"),
    ("Northside Clinic", "northside"),
]
APPLICANT = ("Harbour Hospital", "harbour")
DEMO_PASSWORD = "medchain-demo"
NODE_PASSWORD = "medchain-demo-node"
STEWARD = "mary-steward"
# Watches the consortium in /admin/ (view only); like the admins, sets up its TOTP at first sign-in.
GOVERNOR = "governor"
# Fixed, so a second run finds it; --fresh forgets the chain that anchored it.
DEMO_DATASET_ID = uuid.UUID("6d656463-6861-4e00-8000-64656d6f0001")
DEMO_DATASET_TITLE = "St. Mary's phantom CT (demo)"
DEMO_SLICES = 8
MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Command(BaseCommand):
    help = "Run the whole consortium on this machine (anvil, worker, beat, web, a hospital node)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web server port")
        parser.add_argument("--chain-port", type=int, default=8545, help="anvil port")
        parser.add_argument("--fresh", action="store_true", help="forget var/ state first")
        parser.add_argument(
            "--seed-only",
            action="store_true",
            help="seed the chain and database, then stop (no servers, no dataset upload)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_KEYSTORES or settings.PRODUCTION:
            raise CommandError("the demo runs only on the embedded stack (demo keystores on)")
        self.console = Console(stderr=False)
        self.var = Path(settings.VAR_DIR)
        self.port = options["port"]
        log_dir = self.var / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        Children.stop_stale(self.var / "demo.pids")
        for port in (self.port, options["chain_port"]):
            if not _port_free(port):
                raise CommandError(
                    f"port {port} is in use (another demo or server?): stop it or pass "
                    "--port/--chain-port"
                )
        self._maybe_wipe(fresh=options["fresh"])
        signals = StopSignals()
        children = Children(self.var / "demo.pids", log_dir, Path(settings.BASE_DIR), signals)
        self.children = children
        anvil = AnvilNode(state_file=self.var / "anvil-state.json", port=options["chain_port"])
        signals.install()
        try:
            self._run(anvil, children, signals, seed_only=options["seed_only"])
        except KeyboardInterrupt:
            self.console.print("\n[bold]Stopping[/] the node, web, beat, worker and chain…")
        except CrashLoop as exc:
            self.console.print(f"[bold red]Stopping:[/] {escape(str(exc))}")
            raise CommandError(str(exc)) from exc
        finally:
            signals.ignore()
            # Beat first (no new messages), the web server last (a node's check-in needs it).
            children.stop_all(order=("beat", "worker", "node", "web"))
            anvil.stop()
            self.console.print(f"Stopped. State is kept in {self.var} (use --fresh to start over).")

    def _maybe_wipe(self, *, fresh: bool) -> None:
        state = self.var / "anvil-state.json"
        db_file = Path(str(settings.DATABASES["default"]["NAME"]))
        # The database mirrors the chain: without the chain's state it describes nothing.
        if fresh or not state.exists():
            connections.close_all()
            for path in [state, db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")]:
                path.unlink(missing_ok=True)
            for sub in ("demo-keystores", "nodes", "broker", "demo-data"):
                _rmtree(self.var / sub)
            (self.var / "celerybeat-schedule").unlink(missing_ok=True)

    def _run(
        self, anvil: AnvilNode, children: Children, signals: StopSignals, *, seed_only: bool
    ) -> None:
        steps: list[tuple[str, Callable[[], str | None]]] = [
            ("Starting the chain (anvil)", lambda: self._start_chain(anvil, children, signals)),
            ("Migrating the database", self._migrate),
            ("Deploying the consortium registry", self._deploy),
            ("Admitting Harbour Hospital by vote", self._admit_applicant),
            ("Creating the demo logins and the governor", self._logins),
            ("Registering St. Mary's training node", self._register_node),
            ("Giving St. Mary's a data steward and a Data delegate key", self._data_steward),
        ]
        if not seed_only:
            steps += [
                ("Starting the Celery worker and beat", lambda: self._start_workers(children)),
                ("Starting the ASGI web server (daphne)", lambda: self._start_web(children)),
                ("Starting the hospital node worker", lambda: self._start_node(children)),
                ("Waiting for the node to check in", self._await_check_in),
                ("Writing St. Mary's synthetic CT phantoms", self._make_phantoms),
                ("Uploading them as St. Mary's data steward", self._upload_dataset),
                ("Waiting for St. Mary's node to decrypt them", self._await_decryption),
            ]
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task("MedChain demo", total=len(steps))
            for description, step in steps:
                progress.update(task, description=description)
                started = time.monotonic()
                note = step()
                progress.console.print(
                    f"[green]✓[/] {description}{f' — {escape(note)}' if note else ''} "
                    f"[dim]({time.monotonic() - started:.1f} s)[/]"
                )
                progress.advance(task)
        if seed_only:
            return
        self.console.print(self._dataset_summary())
        url = f"http://127.0.0.1:{self.port}/"
        logins = ", ".join(f"{short}-admin" for _, short in [*FOUNDERS, APPLICANT])
        self.console.print(
            f"[bold green]MedChain is running at {url}[/] — demo logins {logins}, {STEWARD}, "
            f"and {GOVERNOR} for the governance admin at {url}admin/ (password {DEMO_PASSWORD}; "
            "admins and the governor set up an authenticator app at first sign-in); "
            f"logs in {children.log_dir}/; Ctrl-C stops everything."
        )
        while True:
            self._supervise()
            time.sleep(0.5)

    def _supervise(self) -> None:
        """Restart children that died (with back-off), saying so; CrashLoop stops the demo."""
        for line in self.children.supervise():
            self.console.print(f"[yellow]↻[/] {escape(line)}")
        anvil = getattr(self, "anvil", None)
        if anvil is not None and not _running(anvil.pid):
            # Not restarted: anvil saves its state only on a clean exit, so a restart could
            # bring back an older chain than the database mirrors.
            raise CommandError(f"the chain (anvil) stopped: see {anvil.log_file}")

    @staticmethod
    def _migrate() -> None:
        call_command("migrate", verbosity=0)

    def _child_env(self, anvil: AnvilNode) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "MEDCHAIN_VAR_DIR": str(self.var),
                "CHAIN_RPC_URL": anvil.url,
                "CHAIN_RELAYER_KEY": ANVIL_DEV_KEYS[0],
                "NODE_CHECK_IN_SECONDS": str(settings.NODE_CHECK_IN_SECONDS),
                "CELERY_BEAT_SECONDS": str(settings.CELERY_BEAT_SCHEDULE_SECONDS),
                # No debug page for visitors; and a Celery worker in DEBUG keeps every query.
                "DJANGO_DEBUG": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _start_chain(self, anvil: AnvilNode, children: Children, signals: StopSignals) -> None:
        with signals.deferred():  # recorded before a Ctrl-C can stop the demo
            anvil.start()
            if anvil.pid is not None:
                children.adopt("anvil", anvil.pid)
        self.anvil = anvil
        settings.CHAIN_RPC_URL = anvil.url
        settings.CHAIN_RELAYER_KEY = ANVIL_DEV_KEYS[0]

    def _demo_account(self, short: str) -> tuple[str, str]:
        """A demo member's governance key, created once and kept in its demo keystore."""
        from portal.consortium import services

        index = self.var / "demo-keystores" / "index.json"
        known = json.loads(index.read_text()) if index.exists() else {}
        if short not in known:
            account = Account.create()
            services.demo_keystore_save(address=account.address, private_key=account.key.hex())
            known[short] = account.address
            index.parent.mkdir(parents=True, exist_ok=True)
            index.write_text(json.dumps(known, indent=2))
        address = known[short]
        path = settings.DEMO_KEYSTORE_DIR / f"{address.lower()}.json"
        from chain.keystore import read_keystore

        return address, read_keystore(path, services.DEMO_KEYSTORE_PASSWORD)

    @staticmethod
    def _data_key() -> str:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = (
            X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        return "0x" + public.hex()

    def _deploy(self) -> None:
        founders = []
        for name, short in FOUNDERS:
            address, _ = self._demo_account(short)
            founders.append(
                {
                    "name": name,
                    "address": address,
                    "data_key": self._data_key(),
                    "contact_email": f"admin@{short}.example",
                    "role": 1,
                }
            )
        path = self.var / "demo-founders.json"
        path.write_text(json.dumps(founders, indent=2))
        call_command("deploy_contracts", founders=str(path), stdout=io.StringIO())
        from portal.core.sync import chain_sync_run

        chain_sync_run()

    def _admit_applicant(self) -> None:
        from portal.consortium import services
        from portal.consortium.models import Member, Proposal

        name, short = APPLICANT
        address, key = self._demo_account(short)
        member = Member.objects.filter(governance_address=address).first()
        if member is None:
            data_key = self._data_key()
            typed = services.application_typed_data(
                governance_address=address, role=1, data_public_key=data_key, name=name
            )
            member = services.application_submit(
                name=name,
                contact_email=f"admin@{short}.example",
                governance_address=address,
                data_public_key=data_key,
                signature="0x" + eip712.sign_typed(key, typed).hex(),
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
            raise CommandError(f"{name} was not admitted ({member.get_status_display()})")

    def _logins(self) -> None:
        from django.contrib.auth import get_user_model

        from portal.consortium import services
        from portal.consortium.models import Member, Staff

        for name, short in [*FOUNDERS, APPLICANT]:
            username = f"{short}-admin"
            if get_user_model().objects.filter(username=username).exists():
                continue
            member = Member.objects.get(name=name)
            services.staff_create(
                member=member,
                username=username,
                password=DEMO_PASSWORD,
                email=f"admin@{short}.example",
                role=Staff.Role.ADMIN,
            )
        if not get_user_model().objects.filter(username=GOVERNOR).exists():
            services.governor_create(
                username=GOVERNOR, password=DEMO_PASSWORD, email="governor@consortium.example"
            )

    def _register_node(self) -> None:
        from portal.consortium.models import Member
        from portal.nodes import services as nodes
        from portal.nodes.keystore import NodeIdentity, NodeKeystore
        from portal.nodes.models import Node

        node_dir = self.var / "nodes" / "mary-node-1"
        self.node_dir = node_dir
        if not (node_dir / "node.json").exists():
            NodeKeystore.create(node_dir, NODE_PASSWORD)
        (node_dir.parent / "password").write_text(NODE_PASSWORD)
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
        self.node_id = node.node_id
        token_file = node_dir.parent / "mary-node-1.token"
        token_file.write_text(nodes.node_token_issue(node=node))
        os.chmod(token_file, 0o600)
        self.token_file = token_file

    def _data_steward(self) -> None:
        """St. Mary's steward login, and a Data delegate key that signs its manifests and the
        grants to its own nodes (the steward never holds the governance key)."""
        from django.contrib.auth import get_user_model

        from chain.registry import Scope
        from portal.consortium import services
        from portal.consortium.models import Delegate, Member, Staff
        from portal.core import chain as portal_chain
        from portal.core.sync import chain_sync_run

        name, short = FOUNDERS[0]
        member = Member.objects.get(name=name)
        if not get_user_model().objects.filter(username=STEWARD).exists():
            services.staff_create(
                member=member,
                username=STEWARD,
                password=DEMO_PASSWORD,
                email=f"steward@{short}.example",
                role=Staff.Role.STEWARD,
            )
        delegate, _ = self._demo_account(f"{short}-data")
        self.data_delegate = delegate
        if Delegate.objects.filter(
            member=member, address=delegate, scope=Delegate.Scope.DATA, enabled=True
        ).exists():
            return
        # The admin's governance key signs the delegation; the portal's relayer sends it.
        _, governance_key = self._demo_account(short)
        registry = portal_chain.registry()
        typed = registry.set_delegate_typed(member.governance_address, delegate, Scope.DATA, True)
        registry.set_delegate_by_sig(
            delegate,
            Scope.DATA,
            True,
            member.governance_address,
            eip712.sign_typed(governance_key, typed),
        )
        chain_sync_run()

    def _start_workers(self, children: Children) -> None:
        celery = str(Path(sys.executable).parent / "celery")
        env = self._child_env(self.anvil)
        children.start(
            "worker",
            [celery, "-A", "portal", "worker", "-Q", "portal", "-n", "portal@%h",
             "--concurrency", "2", "--loglevel", "INFO"],
            env,
        )  # fmt: skip
        children.start(
            "beat",
            [celery, "-A", "portal", "beat", "-s", str(self.var / "celerybeat-schedule"),
             "--loglevel", "INFO"],
            env,
        )  # fmt: skip

    def _start_web(self, children: Children) -> None:
        # Daphne itself, as in production: DEBUG is off, WhiteNoise serves the static files.
        children.start(
            "web",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "portal.asgi:application"],
            self._child_env(self.anvil),
        )  # fmt: skip
        self._await(lambda: _http_status(f"http://127.0.0.1:{self.port}/health") is not None, 60)

    def _start_node(self, children: Children) -> None:
        env = self._child_env(self.anvil)
        env["MEDCHAIN_NODE_PASSWORD_FILE"] = str(self.node_dir.parent / "password")
        children.start(
            "node",
            [sys.executable, MANAGE, "run_node", "--keystore", str(self.node_dir),
             "--portal-url", f"http://127.0.0.1:{self.port}", "--token-file", str(self.token_file),
             "--rpc-url", self.anvil.url],
            env,
        )  # fmt: skip

    def _await_check_in(self) -> None:
        from portal.celery import app
        from portal.nodes.models import Node

        def checked_in() -> bool:
            node = Node.objects.get(node_id=self.node_id)
            return node.last_check_in is not None and node.is_online

        app.send_task("nodes.request_check_ins", queue="portal")
        if not self._await(checked_in, 60, every=1.0, nudge=15):
            raise CommandError("the node did not check in within 60 s: see var/log/node.log")

    def _make_phantoms(self) -> str:
        from training.ingest.phantoms import write_ct_dataset

        source = self.var / "demo-data" / FOUNDERS[0][1]
        # annotations.json is written last: without it the slices are rewritten, identically.
        if (source / "annotations.json").exists():
            return f"already in {source}"
        write_ct_dataset(source, profile="hospital-a", count=DEMO_SLICES, seed=0)
        return f"{DEMO_SLICES} slices in {source}"

    def _upload_dataset(self) -> str | None:
        """What a hospital's steward runs: `upload_dataset` against the running web server,
        with the steward's own Data delegate keystore alone."""
        from portal.consortium.services import DEMO_KEYSTORE_PASSWORD
        from portal.datasets.models import Dataset

        uploaded = Dataset.objects.filter(pk=DEMO_DATASET_ID)
        if uploaded.exclude(status=Dataset.Status.UPLOADING).exists():
            self.uploaded_now = False
            return "already uploaded, skipped"
        self.uploaded_now = True
        data = self.var / "demo-data"
        base = f"http://127.0.0.1:{self.port}"
        token_file = data / f"{STEWARD}.token"
        token_file.write_text(_api_token(base, STEWARD, DEMO_PASSWORD))
        os.chmod(token_file, 0o600)
        password_file = data / "keystore-password"
        password_file.write_text(DEMO_KEYSTORE_PASSWORD)
        errors = io.StringIO()
        call_command(
            "upload_dataset",
            str(data / FOUNDERS[0][1]),
            portal=base,
            token_file=str(token_file),
            keystore=str(_demo_keystore(self.data_delegate)),
            password_file=str(password_file),
            title=DEMO_DATASET_TITLE,
            dataset_id=str(DEMO_DATASET_ID),
            work_dir=str(data / f"upload-{FOUNDERS[0][1]}"),
            rpc_url=self.anvil.url,
            no_progress=True,
            stdout=io.StringIO(),
            stderr=errors,
        )
        return errors.getvalue().strip() or None

    def _await_decryption(self) -> None:
        from portal.datasets.models import AccessLog
        from portal.datasets.tasks import fetch_and_verify
        from portal.nodes.models import Node

        by_node = AccessLog.objects.filter(
            dataset_id=DEMO_DATASET_ID, node__node_id=self.node_id, what="dataset"
        )

        def decrypted() -> bool:
            refused = by_node.filter(action=AccessLog.Action.REFUSE).first()
            if refused is not None:
                raise CommandError(f"St. Mary's node refused the demo dataset: {refused.detail}")
            return by_node.filter(action=AccessLog.Action.DECRYPT).exists()

        if not self.uploaded_now and not decrypted():
            # An earlier run stopped before the node was done: ask again (the task is idempotent).
            queue = Node.objects.get(node_id=self.node_id).queue
            fetch_and_verify.apply_async(args=[str(DEMO_DATASET_ID), None], queue=queue)
        if not self._await(decrypted, 120, every=1.0):
            raise CommandError(
                "St. Mary's node did not decrypt the demo dataset within 120 s: "
                "see var/log/node.log and var/log/worker.log"
            )

    def _dataset_summary(self) -> str:
        from portal.datasets.models import AccessLog, Dataset, DatasetVersion

        dataset = Dataset.objects.get(pk=DEMO_DATASET_ID)
        versions = dataset.versions.exclude(state=DatasetVersion.State.UPLOADING)
        shown = versions.order_by("-number").first()
        assert shown is not None  # anchored before the node could decrypt it
        log = (
            AccessLog.objects.filter(dataset=dataset, action=AccessLog.Action.DECRYPT)
            .select_related("node")
            .first()
        )
        node = str(log.node) if log is not None and log.node is not None else "the node"
        return (
            f"[bold]Dataset {escape(dataset.title)}[/] decrypted and verified on {escape(node)}: "
            f"{dataset.instances} instances, {dataset.boxes} boxes, version {shown.number}, "
            f"anchored in tx {shown.anchored_tx} (manifest {shown.manifest_sha256}) — "
            f"http://127.0.0.1:{self.port}/datasets/{dataset.pk}/"
        )

    def _await(
        self, ready: Callable[[], bool], seconds: float, *, every: float = 0.5, nudge: float = 0
    ) -> bool:
        deadline = time.monotonic() + seconds
        next_nudge = time.monotonic() + nudge if nudge else None
        while time.monotonic() < deadline:
            self._supervise()
            if ready():
                return True
            if next_nudge is not None and time.monotonic() > next_nudge:
                from portal.celery import app

                app.send_task("nodes.request_check_ins", queue="portal")
                next_nudge = time.monotonic() + nudge
            time.sleep(every)
        return False


def _running(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _api_token(base: str, username: str, password: str) -> str:
    """The steward's API token, asked of the portal as a hospital's script would."""
    response = requests.post(
        f"{base}/api/v1/auth/token/",
        json={"username": username, "password": password},
        timeout=30,
    )
    if not response.ok:
        raise CommandError(f"the portal refused {username}'s token: {response.text[:200]}")
    return str(response.json()["token"])


def _demo_keystore(address: str) -> Path:
    return Path(settings.DEMO_KEYSTORE_DIR) / f"{address.lower()}.json"


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
