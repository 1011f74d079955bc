"""Embedded broker throughput under concurrent producers, against the same run on Redis.

Producer processes publish JSON events of about 1 KB each (what a node streams while
it trains) through kombu, with the transport and options the portal's settings use;
one consumer process takes them one at a time and acknowledges each (prefetch 1, as
the Celery settings have it). The figure is messages per second from the moment the
producers start until the consumer has acknowledged the last message; every process
is started and connected before the clock starts.

The baseline is the same run on Redis (db 14 of 127.0.0.1:6379, a queue of its own,
deleted afterwards) when Redis answers; otherwise the baseline and ratio are null.
Embedded and Redis runs alternate and the best of each counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import random
import tempfile
import time
import uuid
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import kombu as _kombu

kombu: Any = _kombu  # the stubs celery-types ships for kombu are partial

REDIS_URL = "redis://127.0.0.1:6379/14"
EMBEDDED_TRANSPORT = "portal.core.broker:Transport"
EMBEDDED_OPTIONS = {"polling_interval": 0.05}  # as portal/settings.py sets them


def _event(producer: int, seq: int, rng: random.Random) -> dict[str, Any]:
    return {
        "round": str(uuid.UUID(int=rng.getrandbits(128))),
        "node": "0x" + rng.randbytes(32).hex(),
        "producer": producer,
        "seq": seq,
        "loss": rng.uniform(0.01, 3.0),
        "images_per_s": rng.uniform(5, 40),
        "eta_s": rng.randint(0, 3600),
        "boxes": [[rng.randint(0, 200), rng.randint(0, 200), 210, 220] for _ in range(20)],
        "note": "epoch done — ✓",
    }


def _connection(url: str, transport: str | None) -> Any:
    options = EMBEDDED_OPTIONS if transport == EMBEDDED_TRANSPORT else {}
    return kombu.Connection(url, transport=transport, transport_options=options)


def _produce(
    url: str, transport: str | None, queue: str, index: int, count: int, ready: Any, go: Event
) -> None:
    rng = random.Random(index)
    events = [_event(index, seq, rng) for seq in range(count)]
    with _connection(url, transport) as conn:
        producer = conn.Producer(serializer="json")
        q = kombu.Queue(queue)
        q(conn.default_channel).declare()
        ready.put(index)
        go.wait()
        for event in events:
            producer.publish(event, routing_key=queue)


def _consume(
    url: str, transport: str | None, queue: str, total: int, ready: Any, go: Event, done: Any
) -> None:
    acked = 0

    def on_message(body: Any, message: Any) -> None:
        nonlocal acked
        message.ack()
        acked += 1

    with _connection(url, transport) as conn:
        consumer = kombu.Consumer(conn, [kombu.Queue(queue)], callbacks=[on_message])
        consumer.qos(prefetch_count=1)
        consumer.consume()
        ready.put("consumer")
        go.wait()
        deadline = time.monotonic() + 600
        while acked < total and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
        consumer.cancel()
    done.put((acked, time.monotonic()))


def _run_once(url: str, transport: str | None, *, producers: int, count: int) -> float:
    """Messages per second for one run; the queue is deleted afterwards."""
    ctx = mp.get_context("spawn")  # clean children: no handle inherited from this process
    queue = f"bench.{uuid.uuid4().hex[:8]}"
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    total = producers * count
    procs = [ctx.Process(target=_consume, args=(url, transport, queue, total, ready, go, done))]
    procs += [
        ctx.Process(target=_produce, args=(url, transport, queue, i, count, ready, go))
        for i in range(producers)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        start = time.monotonic()
        go.set()
        acked, end = done.get(timeout=660)
        if acked < total:
            raise RuntimeError(f"the consumer acknowledged {acked} of {total} messages in time")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        with _connection(url, transport) as conn:
            conn.default_channel.queue_delete(queue)
    return total / (end - start)


def _redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


def run(*, producers: int = 4, count: int = 2500, repeats: int = 2) -> dict[str, Any]:
    """The bench.json entry, and the runs behind it."""
    work = Path(tempfile.mkdtemp(prefix="medchain-bench-broker-"))
    embedded_url = f"sqlite:///{work / 'broker.sqlite3'}"
    with_redis = _redis_answers()
    embedded: list[float] = []
    baseline: list[float] = []
    for _ in range(repeats):
        embedded.append(
            _run_once(embedded_url, EMBEDDED_TRANSPORT, producers=producers, count=count)
        )
        if with_redis:
            baseline.append(_run_once(REDIS_URL, None, producers=producers, count=count))
    value = max(embedded)
    best_baseline = max(baseline) if baseline else None
    return {
        "figure": {
            "value": round(value, 2),
            "baseline": round(best_baseline, 2) if best_baseline else None,
            "ratio": round(value / best_baseline, 4) if best_baseline else None,
            "unit": "messages/s",
        },
        "details": {
            "producers": producers,
            "messages_per_producer": count,
            "embedded_runs": [round(r, 1) for r in embedded],
            "redis_runs": [round(r, 1) for r in baseline],
            "redis": REDIS_URL if with_redis else "did not answer",
        },
    }


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(run(), indent=2))
