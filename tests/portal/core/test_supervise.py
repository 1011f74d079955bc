"""The demo's supervision: the restart policy as plain arithmetic, then real child processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from portal.core.supervise import (
    STOP_SIGNALS,
    Children,
    CrashLoop,
    RestartPolicy,
    StopSignals,
    group_members,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# A leader with a pool process in its group, like a Celery prefork worker.
WITH_POOL = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(60)']); time.sleep(60)",
]


def test_it_doubles_the_back_off_up_to_its_cap():
    policy = RestartPolicy(limit=100, window=60, first_delay=1, max_delay=5)
    assert [policy.crashed(t) for t in range(5)] == [1, 2, 4, 5, 5]


def test_it_gives_up_at_the_limit_within_the_window():
    policy = RestartPolicy(limit=5, window=60)
    assert [policy.crashed(t) for t in (0, 10, 20, 30)] == [1, 2, 4, 8]
    assert policy.crashed(40) is None


def test_it_forgets_crashes_older_than_the_window():
    policy = RestartPolicy(limit=3, window=60)
    assert policy.crashed(0) == 1
    assert policy.crashed(30) == 2
    assert policy.crashed(100) == 1  # both earlier crashes are more than 60 s old
    assert policy.crashed(120) == 2


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    kids = Children(tmp_path / "demo.pids", log_dir, tmp_path)
    yield kids
    kids.stop_all()


def _recorded(kids: Children) -> dict[str, int]:
    return {name: int(pid) for name, pid in json.loads(kids.pidfile.read_text()).items()}


def _await_group(pgid: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(group_members(pgid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(pgid)) >= count


def test_it_restarts_a_killed_child_once_and_leaves_none_of_the_old_one(children: Children):
    first = children.start("worker", WITH_POOL, dict(os.environ))
    _await_group(first.pid, 2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    now = time.monotonic()
    [line] = children.supervise(now)
    assert line.startswith("worker exited with code -9; restarting in 1 s")
    assert str(children.log_dir / "worker.log") in line
    assert group_members(first.pid) == []  # its pool process went with it
    assert children.supervise(now + 0.5) == []

    [line] = children.supervise(now + 1)
    second = _recorded(children)["worker"]
    assert line == f"worker restarted (pid {second}) — its log: {children.log_dir / 'worker.log'}"
    assert second != first.pid and psutil.Process(second).is_running()
    assert children.supervise(now + 2) == []
    assert children.restarts() == {"worker": 1}


def test_it_stops_on_a_child_that_keeps_crashing_and_names_it(tmp_path: Path):
    kids = Children(
        tmp_path / "demo.pids", tmp_path, tmp_path, policy=lambda: RestartPolicy(limit=2)
    )
    crasher = [sys.executable, "-c", "raise SystemExit(3)"]
    try:
        kids.start("beat", crasher, dict(os.environ)).wait(timeout=10)
        [line] = kids.supervise(0)
        assert "beat exited with code 3; restarting in 1 s" in line
        assert kids.supervise(1)[0].startswith("beat restarted")
        kids.children["beat"].proc.wait(timeout=10)  # type: ignore[union-attr]
        with pytest.raises(CrashLoop) as crash:
            kids.supervise(2)
    finally:
        kids.stop_all()
    assert str(crash.value) == (
        f"beat crashed 2 times within 60 s (last exit code 3): see {tmp_path / 'beat.log'}"
    )


def test_it_stops_every_child_with_its_pool_and_forgets_the_pidfile(children: Children):
    started = [children.start(name, WITH_POOL, dict(os.environ)) for name in ("a", "b")]
    for proc in started:
        _await_group(proc.pid, 2)
    children.stop_all()
    assert all(proc.poll() is not None for proc in started)
    assert [group_members(proc.pid) for proc in started] == [[], []]
    assert not children.pidfile.exists()


def test_it_holds_a_stop_signal_until_the_deferred_block_ends():
    signals = StopSignals()
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    signals.install()
    reached_end = False
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGHUP"), signals.deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            reached_end = True
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert reached_end


def test_it_stops_children_one_at_a_time_in_the_order_given(children: Children, tmp_path: Path):
    said = tmp_path / "stopped"
    for name in ("worker", "beat", "web", "node"):
        says_when_stopped = (
            "import signal, sys, time\n"
            "def stop(*_):\n"
            f"    open({str(said)!r}, 'a').write({name!r} + '\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            f"open({str(said)!r}, 'a').write('up\\n')\n"
            "time.sleep(60)\n"
        )
        children.start(name, [sys.executable, "-c", says_when_stopped], dict(os.environ))
    deadline = time.monotonic() + 10
    while (said.read_text() if said.exists() else "").count("up") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    children.stop_all(order=("beat", "worker"))
    assert said.read_text().split()[4:] == ["beat", "worker", "node", "web"]
