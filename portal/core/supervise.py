"""The demo's child processes: started, watched, restarted with back-off, stopped by PID.

`make demo` and `make soak` both run their servers through `Children`. Each child
leads its own session, so a Ctrl-C in the terminal reaches only the demo, which
then stops every child (and its pool processes) by process group. A child that
dies is restarted after a back-off; one that keeps dying stops the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RestartPolicy:
    """Back-off doubling from `first_delay`; gives up at `limit` crashes within `window` s."""

    limit: int = 5
    window: float = 60.0
    first_delay: float = 1.0
    max_delay: float = 30.0
    _crashes: deque[float] = field(default_factory=deque, repr=False)

    def crashed(self, now: float) -> float | None:
        """Record a crash at `now`: the seconds to wait before restarting, or None to give up."""
        self._crashes.append(now)
        while now - self._crashes[0] > self.window:
            self._crashes.popleft()
        recent = len(self._crashes)
        if recent >= self.limit:
            return None
        return min(self.first_delay * 2 ** (recent - 1), self.max_delay)

    @property
    def recent(self) -> int:
        return len(self._crashes)


class CrashLoop(Exception):
    """A child crashed `policy.limit` times within `policy.window` seconds."""

    def __init__(self, name: str, log: Path, returncode: int, policy: RestartPolicy) -> None:
        self.name, self.log, self.returncode = name, log, returncode
        super().__init__(
            f"{name} crashed {policy.limit} times within {policy.window:.0f} s "
            f"(last exit code {returncode}): see {log}"
        )


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP all stop the demo, raised as KeyboardInterrupt.

    Set explicitly: Python installs no SIGINT handler in a process started with SIGINT
    ignored, as every background job of a script is. Inside `deferred()` a signal waits
    until the block ends, so a child is never started without being recorded.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    @staticmethod
    def ignore() -> None:
        """While stopping: a second Ctrl-C must not cut the shutdown short."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise KeyboardInterrupt(signal.Signals(signum).name)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    policy: RestartPolicy
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Children:
    """The demo's child processes, recorded by PID in `pidfile` for a later run to find."""

    pidfile: Path
    log_dir: Path
    cwd: Path
    signals: StopSignals = field(default_factory=StopSignals)
    policy: Callable[[], RestartPolicy] = RestartPolicy
    children: dict[str, Child] = field(default_factory=dict)
    adopted: dict[str, int] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        child = Child(name, argv, env, self.log_dir / f"{name}.log", self.policy())
        self.children[name] = child
        return self._spawn(child)

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        log = child.log_path.open("ab")
        self._logs.append(log)
        with self.signals.deferred():
            child.proc = subprocess.Popen(
                child.argv,
                env=child.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._record()
        return child.proc

    def adopt(self, name: str, pid: int) -> None:
        """Record a process started elsewhere (anvil), so a later run can find it."""
        self.adopted[name] = pid
        self._record()

    def pids(self) -> dict[str, int]:
        running = {n: c.proc.pid for n, c in self.children.items() if c.proc is not None}
        return {**self.adopted, **running}

    def _record(self) -> None:
        self.pidfile.write_text(json.dumps(self.pids()))

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart what died, after its back-off; lines for the terminal. Raises CrashLoop."""
        now = time.monotonic() if now is None else now
        lines = []
        for child in self.children.values():
            assert child.proc is not None
            if child.restart_at is None and child.proc.poll() is not None:
                code = child.proc.returncode
                # Pool processes of a dead worker would otherwise run beside its successor.
                _kill_group(child.proc.pid)
                delay = child.policy.crashed(now)
                if delay is None:
                    raise CrashLoop(child.name, child.log_path, code, child.policy)
                child.restart_at = now + delay
                lines.append(
                    f"{child.name} exited with code {code}; restarting in {delay:.0f} s "
                    f"(crash {child.policy.recent} of {child.policy.limit} allowed within "
                    f"{child.policy.window:.0f} s) — its log: {child.log_path}"
                )
            elif child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                proc = self._spawn(child)
                lines.append(f"{child.name} restarted (pid {proc.pid}) — its log: {child.log_path}")
        return lines

    def restarts(self) -> dict[str, int]:
        return {name: child.restarts for name, child in self.children.items()}

    def stop_all(self, order: tuple[str, ...] = ()) -> None:
        """Stop the children named in `order` one after the other, then the rest, newest first.

        One at a time, so what is still running can finish its work: a node's check-in
        in flight still finds the web server.
        """
        names = [*order, *(n for n in reversed(self.children) if n not in order)]
        for name in names:
            child = self.children.get(name)
            if child is not None and child.proc is not None:
                _stop(child.proc)
        for log in self._logs:
            log.close()
        self.pidfile.unlink(missing_ok=True)

    @staticmethod
    def stop_stale(pidfile: Path) -> None:
        """Stop what a previous demo that was killed outright left running."""
        if not pidfile.exists():
            return
        for pid in json.loads(pidfile.read_text()).values():
            try:
                cmdline = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
            if any(word in cmdline for word in ("portal", "manage.py", "anvil")):
                if os.getpgid(pid) == pid:
                    _signal_group(pid, signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGTERM)  # anvil dumps its state on SIGTERM
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).wait(timeout=15)
        pidfile.unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    # The child leads its own session: this reaches its pool processes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        # The leader only: a Celery worker stops its own pool (a SIGTERM to the pool too
        # makes it log an ERROR per process); what it leaves is killed below.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    _kill_group(proc.pid)


def _kill_group(pgid: int, timeout: float = 10) -> None:
    """SIGKILL what is left of a dead child's process group, and wait until it is gone."""
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_members(pgid):
        time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members
