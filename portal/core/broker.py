"""The embedded Celery broker: a kombu virtual transport over one SQLite file.

Selected by ``CELERY_BROKER_URL=sqlite:////path/to/broker.sqlite3`` with
``CELERY_BROKER_TRANSPORT=portal.core.broker:Transport`` (the settings' default when
no broker or Redis URL is set). It needs no server: Python's own ``sqlite3``.

Why not what kombu ships:

- ``filesystem://`` creates a message file, then writes it; a consumer reads any file
  it lists, so it can read an empty one, die with "Unrecoverable error:
  JSONDecodeError" and lose the message (celery/kombu#1551). It also deletes a message
  when it is taken, so a consumer killed before acknowledging loses it.
- ``sqla+sqlite://`` (SQLAlchemy) only hides a message once taken and never shows it
  again: a killed consumer loses what it had, and it needs SQLAlchemy besides.
- Atomic renames into the folder would fix the race, not the loss on a kill.

Here every put is one INSERT and every take one UPDATE ... RETURNING, each inside an
IMMEDIATE transaction on a WAL database (writers queue on a lock file, see
BrokerFile), so a reader sees a whole message or none. Taking a message does not
remove it: it marks the row with its owner (host, pid and the process's start time,
so a reused pid is not mistaken for it). An acknowledgement deletes the row, so an
acknowledged message is never delivered again; a reject with requeue, or kombu's
restore when a channel closes, clears the owner. Any consumer checks now and then
(``recover_interval``) whether the owners of taken rows on this host are still alive
and makes the rows of dead ones (SIGKILL, OOM) visible again: they go to the
restarted consumer or another one. A live owner keeps its rows however long its task
runs, unlike a visibility timeout.

Bindings live in the file too, so direct, topic and fanout exchanges route alike in
every process: ``celery inspect`` and remote control work. A message sent to a
fanout exchange expires after ``fanout_ttl`` seconds, as a broadcast nobody hears
should not pile up in the queue of a worker that is gone.

Limits: one machine (SQLite over a network file system is not safe, and liveness is
checked through the local process table); ``synchronous=NORMAL`` keeps every message
through a process kill but may lose the last commits on power loss; a message that
kills every consumer that takes it is delivered again and again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import Any, cast

import psutil
from kombu.transport import virtual  # type: ignore[attr-defined]
from kombu.utils import json as kombu_json

logger = logging.getLogger(__name__)
# kombu's JSON (it also encodes dates, UUIDs and decimals); the stubs misdescribe it.
_dumps = cast(Callable[[Any], str], kombu_json.dumps)
_loads = cast(Callable[[str], Any], kombu_json.loads)

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    owner TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    expires REAL
);
CREATE INDEX IF NOT EXISTS message_visible
    ON message (queue, priority DESC, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS message_owner ON message (owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_expires ON message (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, pattern, queue)
);
"""

# The oldest visible message of a queue, highest priority first (AMQP's order).
_NEXT = (
    "SELECT id FROM message WHERE queue = ? AND owner IS NULL"
    " AND (expires IS NULL OR expires > ?) ORDER BY priority DESC, id LIMIT 1"
)
_RETURNING = "RETURNING id, payload, deliveries"
_HAS_SCHEMA = "SELECT 1 FROM sqlite_master WHERE name = 'binding'"
_HOST = socket.gethostname()
_INHERITED: list[BrokerFile] = []


def _start_time(pid: int) -> str | None:
    """When process `pid` started, exactly, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): psutil reads the kernel's start time instead
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return f"{proc.create_time():.6f}"
        except psutil.Error:
            return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22, starttime in clock ticks since boot


def owner_of(pid: int) -> str:
    """The owner string a process writes on the rows it takes."""
    return f"{_HOST}:{pid}:{_start_time(pid)}"


def owner_alive(owner: str) -> bool:
    """False only for an owner on this host whose process is gone (or was replaced)."""
    host, pid, start = owner.rsplit(":", 2)
    if host != _HOST:
        return True  # another machine's process: nothing here can tell
    return _start_time(int(pid)) == start


class BrokerFile:
    """One process's handle on the broker: a SQLite connection in autocommit mode (the
    transactions are explicit) and the lock file its writers queue on.

    A writer takes an flock on ``<file>.lock`` before BEGIN IMMEDIATE: the kernel wakes a
    waiter as soon as the lock is free, whereas SQLite's busy handler sleeps up to 100 ms
    between tries, and producers in a tight loop starved the consumers for seconds.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self.db = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        with self._locked():
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            if self.db.execute(_HAS_SCHEMA).fetchone() is None:
                self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed whole, or rolled back."""
        with self._locked():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        # A forked child leaves its parent's handles alone.
        if self.pid == os.getpid():
            self.db.close()
            os.close(self.lock_fd)


class QoS(virtual.QoS):
    """Unacknowledged messages stay in the file, owned by this process: an ack deletes
    the row, a requeue or a restore hands it back."""

    def ack(self, delivery_tag: str) -> None:
        self.channel.rows_delete([delivery_tag])
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.rows_release([delivery_tag])
        else:
            self.channel.rows_delete([delivery_tag])
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        self._flush()
        delivered = list(self._delivered.items())
        self._delivered.clear()
        try:
            self.channel.rows_release([tag for tag, _ in delivered])
        except Exception as exc:
            return [(exc, message) for _, message in delivered]
        return []


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True
    from_transport_options = (
        *virtual.Channel.from_transport_options,
        "busy_timeout",
        "synchronous",
        "recover_interval",
        "fanout_ttl",
    )
    busy_timeout = 30.0
    synchronous = "NORMAL"
    recover_interval = 1.0
    fanout_ttl = 60.0

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        vhost = (self.connection.client.virtual_host or "").strip()
        if not vhost or vhost == "/":
            raise ValueError(
                "the sqlite broker URL names no file: use sqlite:////absolute/path/broker.sqlite3"
            )
        self.path = Path(vhost)
        self._lock = threading.RLock()
        self._file: BrokerFile | None = None
        self._owner = ""
        self._no_ack_queues: set[str] = set()
        self._next_recovery = 0.0
        self._maybe_recover()  # opens the file now, so a bad path fails at connect

    @property
    def file(self) -> BrokerFile:
        # A forked child (Celery's pool) must not share its parent's handles.
        if self._file is None or self._file.pid != os.getpid():
            if self._file is not None:
                _INHERITED.append(self._file)  # never closed here: SQLite must not, after a fork
            self._file = BrokerFile(
                self.path, busy_timeout=float(self.busy_timeout), synchronous=self.synchronous
            )
            self._owner = owner_of(self._file.pid)
        return self._file

    @property
    def db(self) -> sqlite3.Connection:
        return self.file.db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self.file.write() as db:
            yield db

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._insert([queue], message, expires=None)

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any
    ) -> None:
        queues = sorted({queue for _, _, queue in self.get_table(exchange)})
        now = time.time()
        self._insert(queues, message, expires=now + float(self.fanout_ttl))
        with self._write() as db:
            db.execute("DELETE FROM message WHERE expires < ? AND owner IS NULL", (now,))

    def _insert(
        self, queues: Sequence[str], message: dict[str, Any], *, expires: float | None
    ) -> None:
        if not queues:
            return
        payload = _dumps(message)
        priority = self._get_message_priority(message)
        with self._write() as db:
            db.executemany(
                "INSERT INTO message (queue, priority, payload, expires) VALUES (?, ?, ?, ?)",
                [(queue, priority, payload, expires) for queue in queues],
            )

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        return self._take(queue, remove=queue in self._no_ack_queues)

    def _take(self, queue: str, *, remove: bool) -> dict[str, Any]:
        """Claim the next visible message of `queue` (or delete it, for a no-ack consumer)."""
        self._maybe_recover()
        now = time.time()
        with self._lock:
            # A plain read first: an empty poll takes no write lock.
            if self.db.execute(_NEXT, (queue, now)).fetchone() is None:
                raise Empty()
            with self._write() as db:
                if remove:
                    rows = db.execute(
                        f"DELETE FROM message WHERE id = ({_NEXT}) {_RETURNING}",
                        (queue, now),
                    ).fetchall()
                else:
                    rows = db.execute(
                        "UPDATE message SET owner = ?, deliveries = deliveries + 1"
                        f" WHERE id = ({_NEXT}) {_RETURNING}",
                        (self._owner, queue, now),
                    ).fetchall()
        if not rows:
            raise Empty()  # another consumer took it between the read and the claim
        row_id, payload, deliveries = rows[0]
        message: dict[str, Any] = _loads(payload)
        properties = message["properties"]
        # The row is the delivery: fanout copies share kombu's tag, rows never do.
        properties["delivery_tag"] = str(row_id)
        if deliveries > 1:
            properties.setdefault("delivery_info", {})["redelivered"] = True
        return message

    def rows_delete(self, tags: Sequence[str]) -> None:
        """Acknowledge: the rows this process holds are gone for good."""
        with self._write() as db:
            db.executemany(
                "DELETE FROM message WHERE id = ? AND owner = ?",
                [(int(tag), self._owner) for tag in tags],
            )

    def rows_release(self, tags: Sequence[str]) -> None:
        """Hand rows this process holds back to the queue."""
        if not tags:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE message SET owner = NULL WHERE id = ? AND owner = ?",
                [(int(tag), self._owner) for tag in tags],
            )

    def recover_dead_owners(self) -> int:
        """Make the rows taken by dead processes of this host visible again."""
        with self._lock:
            rows = self.db.execute("SELECT DISTINCT owner FROM message WHERE owner IS NOT NULL")
            owners = [row[0] for row in rows]
        dead = [owner for owner in owners if not owner_alive(owner)]
        if not dead:
            return 0
        with self._write() as db:
            released = sum(
                db.execute("UPDATE message SET owner = NULL WHERE owner = ?", (owner,)).rowcount
                for owner in dead
            )
        logger.warning(
            "broker: %d message(s) taken by %d dead consumer(s) are queued again",
            released,
            len(dead),
        )
        return released

    def _maybe_recover(self) -> None:
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + float(self.recover_interval)
            self.recover_dead_owners()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # A no-ack consumer (kombu's pidbox) never acknowledges: its messages are
        # deleted when taken instead of owned.
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        self._no_ack_queues.discard(self._tag_to_queue.get(consumer_tag, ""))
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        try:
            message = self.Message(self._take(queue, remove=no_ack), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [
                (routing_key, pattern, queue)
                for routing_key, pattern, queue in self.db.execute(
                    "SELECT routing_key, pattern, queue FROM binding WHERE exchange = ?",
                    (exchange,),
                )
            ]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO binding VALUES (?, ?, ?, ?)",
                (exchange, routing_key or "", pattern or "", queue),
            )

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: Any = None,
        **kwargs: Any,
    ) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        with self._write() as db:
            db.execute(
                "DELETE FROM binding WHERE queue = ? AND exchange = ? AND routing_key = ?",
                (queue, exchange or "", routing_key or ""),
            )

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        with self._write() as db:
            db.execute("DELETE FROM binding WHERE queue = ?", (queue,))
            db.execute("DELETE FROM message WHERE queue = ? AND owner IS NULL", (queue,))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """queue_delete above removes the rows and bindings once, not per binding."""

    def _purge(self, queue: str) -> int:
        with self._write() as db:
            cursor = db.execute("DELETE FROM message WHERE queue = ? AND owner IS NULL", (queue,))
            return int(cursor.rowcount)

    def _size(self, queue: str) -> int:
        with self._lock:
            row = self.db.execute(
                "SELECT count(*) FROM message WHERE queue = ? AND owner IS NULL"
                " AND (expires IS NULL OR expires > ?)",
                (queue, time.time()),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        super().close()  # restores unacknowledged messages through the handle first
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file = None


class Transport(virtual.Transport):
    Channel = Channel
    # Each idle consumer polls each of its queues this often: one indexed read.
    polling_interval = 0.05
    default_port = None
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"])
    )
    # A busy or broken file is a connection error: Celery reconnects instead of dying.
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)
    # Exchanges declared by any connection of this process (bindings are in the file).
    global_state = virtual.BrokerState()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.state = self.global_state

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's polling loop, except that it times out early while a consumer is at
        its prefetch limit: Celery's blocking loop acknowledges only between two calls,
        so waiting out its 2 s timeout would stall a prefork worker after each batch."""
        start = time.monotonic()
        interval = self.polling_interval or 0.0
        if timeout is not None:
            interval = min(interval, timeout)
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            if timeout is not None and time.monotonic() - start >= timeout:
                raise TimeoutError()
            time.sleep(interval)
            blocked = any(c._consumers and not c.qos.can_consume() for c in self.channels)
            if blocked and timeout is not None:  # a caller without a timeout asked to wait
                raise TimeoutError()

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": None, "hostname": None}
