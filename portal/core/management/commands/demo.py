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

This command only wires the parts: the processes are portal/core/demo/stack.py,
what happens in them portal/core/demo/scenario.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from portal.celery import app
from portal.core.demo.scenario import (
    APPLICANT,
    CLINICIAN,
    FOUNDERS,
    GOVERNOR,
    LOGIN_PASSWORD,
    STEWARD,
    NodeSetup,
    Scenario,
    ScenarioError,
)
from portal.core.demo.stack import Stack, port_free, wipe
from portal.core.supervise import Children, CrashLoop

Step = tuple[str, Callable[[], str | None]]


class Command(BaseCommand):
    help = "Run the whole consortium on this machine (anvil, worker, beat, web, a hospital node)."
    console: Console
    stack: Stack
    scenario: Scenario
    node: NodeSetup  # set by the step that registers it
    delegate: str  # St. Mary's Data delegate, set by the steward's step
    uploaded_now: bool

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
        var = Path(settings.VAR_DIR)
        (var / "log").mkdir(parents=True, exist_ok=True)
        Children.stop_stale(var / "demo.pids")
        for port in (options["port"], options["chain_port"]):
            if not port_free(port):
                raise CommandError(
                    f"port {port} is in use (another demo or server?): stop it or pass "
                    "--port/--chain-port"
                )
        # The database mirrors the chain: without the chain's state it describes nothing.
        if options["fresh"] or not (var / "anvil-state.json").exists():
            wipe(var)
        self.stack = Stack(var, port=options["port"], chain_port=options["chain_port"])
        self.scenario = Scenario(var)
        self.stack.signals.install()
        try:
            self._run(seed_only=options["seed_only"])
        except KeyboardInterrupt:
            self.console.print("\n[bold]Stopping[/] the node, web, beat, worker and chain…")
        except CrashLoop as exc:
            self.console.print(f"[bold red]Stopping:[/] {escape(str(exc))}")
            raise CommandError(str(exc)) from exc
        except ScenarioError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.stack.stop()
            self.console.print(f"Stopped. State is kept in {var} (use --fresh to start over).")

    def _steps(self, *, seed_only: bool) -> list[Step]:
        stack, scenario = self.stack, self.scenario

        def register_node() -> None:
            self.node = scenario.register_node()

        def data_steward() -> None:
            self.delegate = scenario.data_steward()

        steps: list[Step] = [
            ("Starting the chain (anvil)", stack.start_chain),
            ("Migrating the database", lambda: call_command("migrate", verbosity=0)),
            ("Deploying the consortium registry", scenario.deploy),
            ("Admitting Harbour Hospital by vote", scenario.admit_applicant),
            ("Creating the demo logins and the governor", scenario.logins),
            ("Registering St. Mary's training node", register_node),
            ("Giving St. Mary's a data steward and a Data delegate key", data_steward),
        ]
        if not seed_only:
            steps += [
                ("Starting the Celery worker and beat", stack.start_workers),
                ("Starting the ASGI web server (daphne)", self._start_web),
                ("Starting the hospital node worker", self._start_node),
                ("Waiting for the node to check in", self._await_check_in),
                ("Writing St. Mary's synthetic CT phantoms", scenario.make_phantoms),
                ("Uploading them as St. Mary's data steward", self._upload_dataset),
                ("Waiting for St. Mary's node to decrypt them", self._await_decryption),
            ]
        return steps

    def _run(self, *, seed_only: bool) -> None:
        steps = self._steps(seed_only=seed_only)
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
        url = f"{self.stack.url}/"
        logins = ", ".join(f"{short}-admin" for _, short in [*FOUNDERS, APPLICANT])
        self.console.print(
            f"[bold green]MedChain is running at {url}[/] — demo logins {logins}, {STEWARD}, "
            f"{CLINICIAN}, "
            f"and {GOVERNOR} for the governance admin at {url}admin/ (password {LOGIN_PASSWORD}; "
            "admins and the governor set up an authenticator app at first sign-in); "
            f"logs in {self.stack.children.log_dir}/; Ctrl-C stops everything."
        )
        while True:
            self._supervise()
            time.sleep(0.5)

    def _supervise(self) -> None:
        """Restart children that died (with back-off), saying so; CrashLoop stops the demo."""
        for line in self.stack.children.supervise():
            self.console.print(f"[yellow]↻[/] {escape(line)}")
        if self.stack.chain_started and not self.stack.chain_running():
            # Not restarted: anvil saves its state only on a clean exit, so a restart could
            # bring back an older chain than the database mirrors.
            raise CommandError(f"the chain (anvil) stopped: see {self.stack.anvil.log_file}")

    def _start_web(self) -> None:
        self.stack.start_web()
        self._await(self.stack.web_up, 60)

    def _start_node(self) -> None:
        node = self.node
        self.stack.start_node(node.directory, node.token_file, node.password_file)

    def _await_check_in(self) -> None:
        app.send_task("nodes.request_check_ins", queue="portal")
        if not self._await(
            lambda: self.scenario.checked_in(self.node.node_id), 60, every=1.0, nudge=15
        ):
            raise CommandError("the node did not check in within 60 s: see var/log/node.log")

    def _upload_dataset(self) -> str | None:
        self.uploaded_now = not self.scenario.uploaded()
        if not self.uploaded_now:
            return "already uploaded, skipped"
        return self.scenario.upload_dataset(self.stack.url, self.stack.anvil.url, self.delegate)

    def _await_decryption(self) -> None:
        node_id = self.node.node_id
        if not self.uploaded_now and not self.scenario.decrypted(node_id):
            self.scenario.ask_node_to_fetch(node_id)
        if not self._await(lambda: self.scenario.decrypted(node_id), 120, every=1.0):
            raise CommandError(
                "St. Mary's node did not decrypt the demo dataset within 120 s: "
                "see var/log/node.log and var/log/worker.log"
            )

    def _dataset_summary(self) -> str:
        dataset, shown, node = self.scenario.dataset_summary()
        return (
            f"[bold]Dataset {escape(dataset.title)}[/] decrypted and verified on {escape(node)}: "
            f"{dataset.instances} instances, {dataset.boxes} boxes, version {shown.number}, "
            f"anchored in tx {shown.anchored_tx} (manifest {shown.manifest_sha256}) — "
            f"{self.stack.url}/datasets/{dataset.pk}/"
        )

    def _await(
        self, ready: Callable[[], bool], seconds: float, *, every: float = 0.5, nudge: float = 0
    ) -> bool:
        """Wait for `ready`, supervising the children meanwhile; every `nudge` seconds ask
        the nodes to check in again (a request older than one period is dropped)."""
        deadline = time.monotonic() + seconds
        next_nudge = time.monotonic() + nudge if nudge else None
        while time.monotonic() < deadline:
            self._supervise()
            if ready():
                return True
            if next_nudge is not None and time.monotonic() > next_nudge:
                app.send_task("nodes.request_check_ins", queue="portal")
                next_nudge = time.monotonic() + nudge
            time.sleep(every)
        return False
