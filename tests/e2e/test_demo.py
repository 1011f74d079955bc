"""`manage.py demo` end to end, as a person runs it: a child process on free ports
with its own var/ folder, stopped with Ctrl-C (SIGINT).

The first run seeds the consortium, starts every server, uploads St. Mary's
phantom CT dataset through the HTTP API and waits for the node to decrypt it;
it serves its pages with DEBUG off and its static files through WhiteNoise, and
restarts its Celery worker once that is killed. It starts with SIGINT ignored, as
a background job does, and Ctrl-C still stops it. The second run on the same var/
finds the dataset and uploads nothing. The test reads the demo's database with
plain SQL as an observer.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests
from django_otp.oath import totp

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
RUNNING = re.compile(r"MedChain is running at (http://\S+/)")
DECRYPTED = re.compile(
    r"Dataset (.+) decrypted and verified on .+: (\d+) instances, (\d+) boxes, version (\d+), "
    r"anchored in tx (0x[0-9a-f]{64}) .*(http://\S+/datasets/([0-9a-f-]{36})/)"
)
RESTARTED = re.compile(r"worker restarted \(pid (\d+)\) — its log: (\S+worker\.log)")
STEWARD = ("mary-steward", "medchain-demo")
GOVERNOR = ("governor", "medchain-demo")
TOTP_SECRET = re.compile(r'<code id="totp-secret" class="secret">([A-Z2-7=]+)</code>')
STATIC = ROOT / "portal" / "static"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    """One `manage.py demo` process and the lines it has printed so far."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.output)
            if found:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the reader take the last lines
                raise AssertionError(f"the demo exited ({self.proc.returncode}):\n{self.output}")
            time.sleep(0.5)
        raise AssertionError(f"no {pattern.pattern!r} within {timeout:.0f} s:\n{self.output}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def start_demo(var: Path, port: int, chain_port: int, *, sigint_ignored: bool = False) -> Demo:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEDCHAIN_", "CHAIN_", "CELERY_", "DATABASE_", "REDIS_", "DJANGO_"))
    }
    # Wide enough that rich never wraps the lines the test reads.
    env.update({"MEDCHAIN_VAR_DIR": str(var), "COLUMNS": "400", "PYTHONUNBUFFERED": "1"})
    argv = [sys.executable, str(ROOT / "manage.py"), "demo"]
    argv += ["--port", str(port), "--chain-port", str(chain_port)]
    if sigint_ignored:
        # What `make test &` does to its jobs: Python then installs no SIGINT handler itself.
        argv = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Demo(proc)


def recorded_pids(var: Path) -> dict[str, int]:
    return {name: int(pid) for name, pid in json.loads((var / "demo.pids").read_text()).items()}


def assert_all_gone(pids: dict[str, int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = {name: pid for name, pid in pids.items() if _alive(pid)}
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"still running after Ctrl-C: {alive}"
    groups = set(pids.values())
    stragglers = [p.pid for p in psutil.process_iter() if _group_of(p.pid) in groups]
    assert not stragglers, f"pool processes of the demo's children left behind: {stragglers}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def steward_catalogue(base: str) -> list[dict[str, object]]:
    token = requests.post(
        f"{base}api/v1/auth/token/",
        json={"username": STEWARD[0], "password": STEWARD[1]},
        timeout=30,
    )
    assert token.status_code == 200, token.text
    listed = requests.get(
        f"{base}api/v1/datasets/",
        headers={"Authorization": f"Token {token.json()['token']}"},
        timeout=30,
    )
    assert listed.status_code == 200, listed.text
    return list(listed.json()["results"])


def steward_session(base: str) -> requests.Session:
    """Signed in through the login page, as the steward's browser would be."""
    session = requests.Session()
    session.get(f"{base}accounts/login/", timeout=30).raise_for_status()
    signed_in = session.post(
        f"{base}accounts/login/",
        data={
            "username": STEWARD[0],
            "password": STEWARD[1],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    assert signed_in.status_code == 200 and "/accounts/login/" not in signed_in.url
    return session


def assert_governor_looks_through_the_admin(base: str) -> None:
    """The printed governor login signs in at /admin/, sets up its authenticator from the
    page's secret, sees the proposals and nodes, and may change nothing."""
    session = requests.Session()
    session.get(f"{base}admin/login/", timeout=30).raise_for_status()
    setup = session.post(
        f"{base}admin/login/?next=/admin/",
        data={
            "username": GOVERNOR[0],
            "password": GOVERNOR[1],
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    assert "/accounts/two-factor/" in setup.url, setup.url
    secret = TOTP_SECRET.search(setup.text)
    assert secret, setup.text
    code = f"{totp(base64.b32decode(secret.group(1))):06d}"
    verified = session.post(
        setup.url,
        data={
            "token": code,
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    # Setting the app up shows the recovery codes once, with the way on.
    assert 'data-testid="recovery-codes"' in verified.text, verified.text
    verified = session.get(f"{base}admin/", timeout=30)
    assert "MedChain governance" in verified.text
    proposals = session.get(f"{base}admin/consortium/proposal/", timeout=30)
    assert proposals.status_code == 200 and "Harbour Hospital" in proposals.text
    nodes = session.get(f"{base}admin/nodes/node/", timeout=30)
    assert nodes.status_code == 200 and "node 1" in nodes.text
    assert session.get(f"{base}admin/consortium/member/add/", timeout=30).status_code == 403


def assert_static_served_without_debug(base: str, browser: requests.Session) -> None:
    """Every file under portal/static (Pyodide included) through WhiteNoise; no debug page."""
    upload = browser.get(f"{base}datasets/upload/", timeout=30)
    assert upload.status_code == 200 and "/static/js/dataset-upload.js" in upload.text
    files = [  # vendor/ may be a link to another checkout's build
        (Path(folder) / name).relative_to(STATIC).as_posix()
        for folder, _, names in os.walk(STATIC, followlinks=True)
        for name in names
    ]
    assert "vendor/pyodide/pyodide.asm.wasm" in files, "run `make static`"
    for name in [*files, "admin/css/base.css"]:
        served = requests.head(f"{base}static/{name}", timeout=30)
        assert served.status_code == 200, name
    wasm = requests.head(f"{base}static/vendor/pyodide/pyodide.asm.wasm", timeout=30)
    assert wasm.headers["content-type"] == "application/wasm"
    missing = browser.get(f"{base}no-such-page/", timeout=30)
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert "DEBUG = True" not in missing.text and "URLconf" not in missing.text


def kill_and_see_restart(demo: Demo, var: Path) -> dict[str, int]:
    """SIGKILL the Celery worker: the demo names it and its log, and starts one more."""
    killed = recorded_pids(var)["worker"]
    os.kill(killed, signal.SIGKILL)
    restarted = demo.wait_for(RESTARTED, 60)
    assert re.search(r"worker exited with code -9; restarting in 1 s", demo.output)
    assert Path(restarted.group(2)) == var / "log" / "worker.log"
    pids = recorded_pids(var)
    assert pids["worker"] == int(restarted.group(1)) != killed and _alive(pids["worker"])
    # Orphaned pool processes are reaped by whoever is PID 1 here: a zombie is gone enough.
    assert not [
        p.pid for p in psutil.process_iter() if _group_of(p.pid) == killed and _alive(p.pid)
    ]
    return pids


def count_rows(var: Path, table: str) -> int:
    with sqlite3.connect(var / "medchain.sqlite3") as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_it_shows_the_dataset_story_and_skips_the_upload_on_a_second_run(tmp_path: Path):
    var = tmp_path / "var"
    port, chain_port = free_port(), free_port()

    demo = start_demo(var, port, chain_port, sigint_ignored=True)
    try:
        base = demo.wait_for(RUNNING, 300).group(1)
        pids = recorded_pids(var)
        decrypted = DECRYPTED.search(demo.output)
        assert decrypted, demo.output
        title, instances, boxes, version, tx, page, dataset_id = decrypted.groups()
        assert title == "St. Mary's phantom CT (demo)"
        assert (int(instances), int(version)) == (8, 1) and int(boxes) > 0
        assert page == f"{base}datasets/{dataset_id}/"
        assert requests.get(f"{base}health", timeout=30).status_code == 200
        assert [d["id"] for d in steward_catalogue(base)] == [dataset_id]
        browser = steward_session(base)
        listing = browser.get(f"{base}datasets/", timeout=30)
        assert listing.status_code == 200 and f"/datasets/{dataset_id}/" in listing.text
        detail = browser.get(page, timeout=30)
        assert detail.status_code == 200 and tx in detail.text
        assert_static_served_without_debug(base, browser)
        assert_governor_looks_through_the_admin(base)
        killed = pids["worker"]
        pids = kill_and_see_restart(demo, var)
    finally:
        code = demo.interrupt()
    assert code == 0, demo.output
    assert "Stopped." in demo.output
    assert {"anvil", "worker", "beat", "web", "node"} <= set(pids)
    assert_all_gone({**pids, "killed worker": killed})
    assert not (var / "demo.pids").exists()

    again = start_demo(var, port, chain_port)
    try:
        again.wait_for(RUNNING, 300)
        assert "already uploaded, skipped" in again.output
        assert DECRYPTED.search(again.output) and dataset_id in again.output
        pids = recorded_pids(var)
    finally:
        code = again.interrupt()
    assert code == 0, again.output
    assert_all_gone(pids)
    assert (
        count_rows(var, "datasets_dataset"),
        count_rows(var, "datasets_datasetversion"),
        count_rows(var, "datasets_upload"),
    ) == (1, 1, 1)
