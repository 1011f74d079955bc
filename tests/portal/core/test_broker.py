"""The embedded broker (portal/core/broker.py): kombu's calls one by one on a real
SQLite file, then real Celery workers and producer processes under stress, and the
same stress run on kombu's stock filesystem transport, which must fail."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import broker_stress
import pytest
from kombu import Connection, Exchange, Queue

from portal.core.broker import owner_alive, owner_of

ROOT = Path(__file__).resolve().parents[3]
TRANSPORT = "portal.core.broker:Transport"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker' / 'broker.sqlite3'}"


@pytest.fixture
def conn(url: str) -> Iterator[Connection]:
    with Connection(url, transport=TRANSPORT, transport_options={"recover_interval": 0}) as c:
        yield c


def put(conn: Connection, queue: str, body: object) -> None:
    conn.Producer().publish(body, routing_key=queue, declare=[Queue(queue)])


def test_it_delivers_a_message_once_and_forgets_it_after_ack(conn):
    put(conn, "q", {"n": 1})
    queue = Queue("q")(conn.channel())
    message = queue.get(no_ack=False)
    assert message.payload == {"n": 1}
    assert queue.get(no_ack=False) is None  # taken: no other consumer sees it
    message.ack()
    queue.channel.close()
    assert Queue("q")(conn.channel()).get(no_ack=False) is None  # gone, not restored


def test_it_delivers_a_requeued_message_again_marked_redelivered(conn):
    put(conn, "q", {"n": 2})
    queue = Queue("q")(conn.channel())
    queue.get(no_ack=False).requeue()
    again = queue.get(no_ack=False)
    assert again.payload == {"n": 2}
    assert again.delivery_info["redelivered"] is True


def test_it_requeues_what_a_closed_channel_had_not_acknowledged(conn):
    put(conn, "q", {"n": 3})
    channel = conn.channel()
    assert Queue("q")(channel).get(no_ack=False) is not None
    channel.close()
    assert Queue("q")(conn.channel()).get(no_ack=False).payload == {"n": 3}


def test_it_keeps_the_order_of_a_queue_and_counts_what_waits(conn):
    for n in range(5):
        put(conn, "q", {"n": n})
    channel = conn.channel()
    assert channel.queue_declare("q", passive=True).message_count == 5
    assert [Queue("q")(channel).get(no_ack=True).payload["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert channel.queue_declare("q", passive=True).message_count == 0


def _hold_one_message(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """Another process that takes a message without acknowledging it, then waits."""
    script = textwrap.dedent(f"""
        import time
        from kombu import Connection, Queue
        with Connection({url!r}, transport={TRANSPORT!r}) as c:
            m = Queue("q")(c.channel()).get(no_ack=False)
            print(m.payload["n"], flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "7"
    return proc


def test_it_redelivers_what_a_consumer_killed_with_sigkill_had_taken(conn, url, tmp_path):
    put(conn, "q", {"n": 7})
    holder = _hold_one_message(url, tmp_path)
    queue = Queue("q")(conn.channel())
    assert queue.get(no_ack=False) is None  # a live owner keeps it, however long
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    message = queue.get(no_ack=False)
    assert message is not None and message.payload == {"n": 7}
    assert message.delivery_info["redelivered"] is True


def test_it_tells_a_dead_owner_from_a_live_one_with_the_same_pid():
    me = owner_of(os.getpid())
    assert owner_alive(me)
    host, pid, start = me.rsplit(":", 2)
    assert not owner_alive(f"{host}:{pid}:{int(start) - 1}")  # an earlier process, pid reused
    assert owner_alive(f"elsewhere.example:{pid}:{start}")  # another host: nothing to tell


def test_it_broadcasts_to_every_bound_queue_across_connections(url, tmp_path):
    exchange = Exchange("ctl", type="fanout")
    with Connection(url, transport=TRANSPORT) as a, Connection(url, transport=TRANSPORT) as b:
        for conn, name in ((a, "a.pidbox"), (b, "b.pidbox")):
            Queue(name, exchange)(conn.channel()).declare()
    with Connection(url, transport=TRANSPORT) as sender:
        sender.Producer().publish({"cmd": "ping"}, exchange=exchange, declare=[exchange])
    with Connection(url, transport=TRANSPORT) as c:
        got = [Queue(name)(c.channel()).get(no_ack=True) for name in ("a.pidbox", "b.pidbox")]
    assert [m.payload for m in got] == [{"cmd": "ping"}] * 2


def test_it_loses_nothing_under_concurrent_producers_and_a_killed_consumer(tmp_path):
    """4 producer processes x 1,000 JSON events, a prefork Celery worker and a solo
    one on the real settings; the solo one is SIGKILLed midway and restarted."""
    report = broker_stress.run(tmp_path, producers=4, count=1000)
    assert report.problems() == []
    assert report.acked == report.expected
    # The task the killed consumer had done but not acknowledged ran once more, elsewhere.
    [stalled] = report.stalled
    assert len(report.processed[stalled]) == 2
    with sqlite3.connect(tmp_path / "var" / "broker" / "broker.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM message").fetchone() == (0,)


def test_it_reproduces_kombu_1551_with_the_stock_filesystem_transport(tmp_path):
    """The reproduction of celery/kombu#1551, kept so the stress test is known to fail
    when the broker is unsafe: the same run on kombu's filesystem transport, its
    producers pausing between creating a message file and writing it (kombu's own
    order), kills the consumers with JSONDecodeError and loses messages."""
    report = broker_stress.run(
        tmp_path, producers=4, count=15, broker="filesystem", pause=0.3, stall_after=10, stall_s=3.0
    )
    assert any("JSONDecodeError" in died for died in report.died), report.died
    assert report.lost
    with pytest.raises(AssertionError):
        assert report.problems() == []


def test_it_refuses_kombus_filesystem_broker_with_a_reason(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MEDCHAIN_VAR_DIR=str(tmp_path))
    env["CELERY_BROKER_URL"] = "filesystem://localhost//"
    run = subprocess.run(
        [sys.executable, "-c", "import portal.settings"], env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "loses messages (celery/kombu#1551)" in run.stderr
