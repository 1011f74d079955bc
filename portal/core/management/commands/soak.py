"""`make soak`: the demo stack under its beat and node traffic for a while, then a report.

Runs `manage.py demo --fresh` as a child, in its own var folder (var/soak/) on free
ports so a running demo is untouched, with the beat and check-in periods shortened
to make more traffic. Once the demo is up it runs for --minutes, is stopped with
SIGINT as a person stops it, and its logs are read (portal/core/soak.py): messages
taken by the worker and the node, child exits and restarts, and errors. The table
is printed and written as JSON; any error, restart or unclean stop exits 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table
from rich.text import Text

from portal.core.soak import SoakReport, read_demo_output, read_logs
from portal.core.supervise import StopSignals, group_members

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
RUNNING = re.compile(r"MedChain is running at (http://\S+/)")
# Messages sent just before the stop may never be taken; more than this is a backlog or a loss.
IN_FLIGHT = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoRun:
    """One `manage.py demo` child and every line it printed, also kept in `transcript`."""

    def __init__(self, argv: list[str], env: dict[str, str], transcript: Path) -> None:
        self.lines: list[str] = []
        self.transcript = transcript.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # our Ctrl-C reaches the demo only through stop()
        )
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            self.transcript.write(line)
            self.transcript.flush()

    def wait_running(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in self.lines:
                if found := RUNNING.search(line):
                    return found.group(1)
            time.sleep(0.5)
        return None

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        self.transcript.close()
        return code


class Command(BaseCommand):
    help = "Run the demo stack under beat and node traffic; report messages, restarts, errors."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
        parser.add_argument(
            "--check-in-seconds",
            type=int,
            default=5,
            help="how often beat asks the node to check in (the demo's default is 30)",
        )
        parser.add_argument(
            "--beat-seconds",
            type=float,
            default=1.0,
            help="how often beat sends a chain sync (the demo's default is 5)",
        )
        parser.add_argument(
            "--var-dir", type=Path, default=None, help="the demo's var folder (var/soak/)"
        )
        parser.add_argument(
            "--out", type=Path, default=None, help="the JSON report (var/soak.json)"
        )
        parser.add_argument(
            "--startup-timeout", type=float, default=600.0, help="seconds for the demo to come up"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console()
        var = (options["var_dir"] or Path(settings.VAR_DIR) / "soak").resolve()
        out = options["out"] or Path(settings.VAR_DIR) / "soak.json"
        # Logs are appended to across runs: each soak counts only its own.
        shutil.rmtree(var / "log", ignore_errors=True)
        var.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "MEDCHAIN_VAR_DIR": str(var),
                "NODE_CHECK_IN_SECONDS": str(options["check_in_seconds"]),
                "CELERY_BEAT_SECONDS": str(options["beat_seconds"]),
                "COLUMNS": "400",  # rich must not wrap the lines read back
                "PYTHONUNBUFFERED": "1",
            }
        )
        argv = [sys.executable, MANAGE, "demo", "--fresh"]
        argv += ["--port", str(_free_port()), "--chain-port", str(_free_port())]
        signals = StopSignals()
        signals.install()
        started = datetime.now(UTC)
        with signals.deferred():
            demo = DemoRun(argv, env, var / "demo.out")
        interrupted, url, setup, up_at = False, None, 0.0, time.monotonic()
        try:
            console.print(f"Starting the demo stack in {var} (its output: {var / 'demo.out'})…")
            url = demo.wait_running(options["startup_timeout"])
            setup = time.monotonic() - up_at
            if url is None:
                console.print("[red]The demo did not come up.[/] Its last lines:")
                console.print(Text("\n".join(demo.lines[-30:])), soft_wrap=True)
            else:
                console.print(
                    f"Up at {url} after {setup:.0f} s; soaking {options['minutes']:g} min…"
                )
                self._soak(console, demo, var, minutes=options["minutes"])
        except KeyboardInterrupt:
            interrupted = True
            console.print("\nInterrupted: stopping the demo and reporting what ran so far.")
        finally:
            signals.ignore()
            soaked = max(0.0, time.monotonic() - up_at - setup) if url else 0.0
            pids = _recorded_pids(var)
            code = demo.stop()
        report = SoakReport()
        read_logs(var / "log", report)
        read_demo_output(demo.lines, report)
        left = _left_running(pids)
        ok = (
            url is not None
            and not interrupted
            and code == 0
            and not left
            and report.errors == 0
            and not report.exits
            and report.crash_loop is None
            and report.unaccounted <= IN_FLIGHT
        )
        summary = {
            "ok": ok,
            "started": started.isoformat(timespec="seconds"),
            "minutes_asked": options["minutes"],
            "setup_seconds": round(setup, 1),
            "soaked_seconds": round(soaked, 1),
            "check_in_seconds": options["check_in_seconds"],
            "beat_seconds": options["beat_seconds"],
            "demo_exit_code": code,
            "left_running": left,
            "interrupted": interrupted,
            "var_dir": str(var),
            **report.as_json(),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        console.print(_table(summary))
        for sample in report.error_samples:
            console.print(Text(f"  {sample}", style="red"), soft_wrap=True)
        console.print(f"Written to {out}; logs in {var / 'log'}/.")
        if not ok:
            raise CommandError(
                "the soak found errors, restarts, messages never taken or an unclean stop "
                "(see above)"
            )

    def _soak(self, console: Console, demo: DemoRun, var: Path, *, minutes: float) -> None:
        end = time.monotonic() + minutes * 60
        next_note = time.monotonic() + 60
        while time.monotonic() < end and demo.proc.poll() is None:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= next_note:
                report = SoakReport()
                read_logs(var / "log", report)
                read_demo_output(demo.lines, report)
                console.print(
                    f"  {minutes - (end - time.monotonic()) / 60:5.1f} min: "
                    f"{report.messages} messages, {sum(report.restarts.values())} restarts, "
                    f"{report.errors} errors"
                )
                next_note += 60
        if demo.proc.poll() is not None:
            console.print(f"[red]The demo stopped by itself ({demo.proc.returncode}).[/]")


def _recorded_pids(var: Path) -> dict[str, int]:
    pidfile = var / "demo.pids"
    if not pidfile.exists():
        return {}
    return {name: int(pid) for name, pid in json.loads(pidfile.read_text()).items()}


def _left_running(pids: dict[str, int]) -> list[str]:
    left = []
    for name, pid in pids.items():
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        if alive or group_members(pid):
            left.append(name)
    return left


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Soak of the demo stack: {'OK' if summary['ok'] else 'FAILED'}")
    table.add_column("what")
    table.add_column("value", justify="right")

    def per_child(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"

    rows = [
        ("soaked (after setup)", f"{summary['soaked_seconds'] / 60:.1f} min"),
        ("setup", f"{summary['setup_seconds']:.0f} s"),
        (
            "beat / check-in period",
            f"{summary['beat_seconds']:g} s / {summary['check_in_seconds']} s",
        ),
        ("messages taken by workers", str(summary["messages"])),
        ("  by worker", per_child(summary["received"])),
        ("sent by beat", str(summary["sent_by_beat"])),
        (
            "check-ins asked / done",
            f"{summary['check_ins_requested']} / {summary['check_ins_done']}",
        ),
        (f"sent but never taken (≤ {IN_FLIGHT} ok)", str(summary["unaccounted"])),
        ("tasks failed", per_child(summary["failed"])),
        ("tasks expired unrun", per_child(summary["expired"])),
        ("child exits", per_child(summary["exits"])),
        ("child restarts", per_child(summary["restarts"])),
        ("errors in logs (incl. 5xx)", str(summary["errors"])),
        ("HTTP 5xx answers", str(summary["http_5xx"])),
        ("demo exit code", str(summary["demo_exit_code"])),
        ("left running after stop", ", ".join(summary["left_running"]) or "none"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table
