"""The demo's servers: an anvil chain, a Celery worker and beat, the ASGI web
server and St. Mary's node worker, each a child of portal/core/supervise.py's
`Children` with its log under var/log/.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connections

from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from portal.core.supervise import Children, StopSignals

# Beat first (no new messages), the web server last (a node's check-in needs it).
STOP_ORDER = ("beat", "worker", "node", "web")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wipe(var: Path) -> None:
    """Forget the chain and everything that mirrors it or was made on it."""
    db_file = Path(str(settings.DATABASES["default"]["NAME"]))
    connections.close_all()
    for path in [var / "anvil-state.json", db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")]:
        path.unlink(missing_ok=True)
    for sub in (Path(settings.DEMO_KEYSTORE_DIR), var / "nodes", var / "broker", var / "demo-data"):
        shutil.rmtree(sub, ignore_errors=True)
    (var / "celerybeat-schedule").unlink(missing_ok=True)


class Stack:
    """The demo's processes, started in order and supervised until stopped."""

    def __init__(self, var: Path, *, port: int, chain_port: int) -> None:
        self.var = var
        self.port = port
        self.signals = StopSignals()
        self.children = Children(
            var / "demo.pids", var / "log", Path(settings.BASE_DIR), self.signals
        )
        self.anvil = AnvilNode(state_file=var / "anvil-state.json", port=chain_port)
        self.chain_started = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_chain(self) -> None:
        with self.signals.deferred():  # recorded before a Ctrl-C can stop the demo
            self.anvil.start()
            if self.anvil.pid is not None:
                self.children.adopt("anvil", self.anvil.pid)
        self.chain_started = True
        settings.CHAIN_RPC_URL = self.anvil.url
        settings.CHAIN_RELAYER_KEY = ANVIL_DEV_KEYS[0]

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "MEDCHAIN_VAR_DIR": str(self.var),
                "CHAIN_RPC_URL": self.anvil.url,
                # The upload page checks node keys on chain; a steward of the demo has no
                # wallet to read it through, so the page reads the local anvil directly.
                "CHAIN_PUBLIC_RPC_URL": self.anvil.url,
                "CHAIN_RELAYER_KEY": ANVIL_DEV_KEYS[0],
                "NODE_CHECK_IN_SECONDS": str(settings.NODE_CHECK_IN_SECONDS),
                "CELERY_BEAT_SECONDS": str(settings.CELERY_BEAT_SCHEDULE_SECONDS),
                # No debug page for visitors; and a Celery worker in DEBUG keeps every query.
                "DJANGO_DEBUG": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start_workers(self) -> None:
        celery = str(Path(sys.executable).parent / "celery")
        env = self.child_env()
        self.children.start(
            "worker",
            [celery, "-A", "portal", "worker", "-Q", "portal", "-n", "portal@%h",
             "--concurrency", "2", "--loglevel", "INFO"],
            env,
        )  # fmt: skip
        self.children.start(
            "beat",
            [celery, "-A", "portal", "beat", "-s", str(self.var / "celerybeat-schedule"),
             "--loglevel", "INFO"],
            env,
        )  # fmt: skip

    def start_web(self) -> None:
        # Daphne itself, as in production: DEBUG is off, WhiteNoise serves the static files.
        self.children.start(
            "web",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "portal.asgi:application"],
            self.child_env(),
        )  # fmt: skip

    def web_up(self) -> bool:
        return http_status(f"{self.url}/health") is not None

    def start_node(self, node_dir: Path, token_file: Path, password_file: Path) -> None:
        """A hospital's node as its admin starts it: `run_node`, no database."""
        env = self.child_env()
        env["MEDCHAIN_NODE_PASSWORD_FILE"] = str(password_file)
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        self.children.start(
            "node",
            [sys.executable, manage, "run_node", "--keystore", str(node_dir),
             "--portal-url", self.url, "--token-file", str(token_file),
             "--rpc-url", self.anvil.url],
            env,
        )  # fmt: skip

    def chain_running(self) -> bool:
        pid = self.anvil.pid
        try:
            return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def stop(self) -> None:
        self.signals.ignore()
        self.children.stop_all(order=STOP_ORDER)
        self.anvil.stop()
