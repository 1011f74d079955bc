"""A stress harness for the embedded broker: a Celery app on the real settings, its one
task, and the producer and consumer processes that test_broker.py starts.

Run by the tests, never collected itself. Every process appends one line per event to
the file named by STRESS_LOG (O_APPEND writes of one short line are atomic):
``R <name> <pid>`` when a worker is ready, ``P <id> <pid>`` when the task ran,
``A <id> <pid>`` once the broker has the acknowledgement (the transport's own
``basic_ack`` returned: for the embedded broker, the row is deleted), ``S <id> <pid>``
when a consumer stalls in its task for the harness to SIGKILL it, and ``C <id> <pid>``
when a payload arrived corrupted. The consumers run the portal's transport, with
``basic_ack`` noting that line and nothing else changed.

``STRESS_BROKER=filesystem`` points the same harness at kombu's stock filesystem
transport; ``STRESS_PAUSE`` makes its producers sleep between creating a message file
and writing it, which is exactly the order of kombu's own ``_put`` with its race
window widened, so celery/kombu#1551 reproduces on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from portal.core import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

BROKER = os.environ.get("STRESS_BROKER", "embedded")
QUEUE = "portal"


def _log(kind: str, message_id: str) -> None:
    fd = os.open(os.environ["STRESS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {message_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class PausingChannel(filesystem.Channel):
    """kombu's filesystem `_put`, step for step, with a pause between create and write."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        with open(os.path.join(self.data_folder_out, name), "wb", buffering=0) as f:
            filesystem.lock(f, filesystem.LOCK_EX)
            time.sleep(float(os.environ.get("STRESS_PAUSE", "0")))
            f.write(str_to_bytes(dumps(payload)))
            filesystem.unlock(f)


class PausingTransport(filesystem.Transport):
    Channel = PausingChannel


def _recording(channel: type[virtual.Channel]) -> type[virtual.Channel]:
    class RecordingChannel(channel):  # type: ignore[valid-type,misc]
        """Notes each acknowledgement once the broker has it (for the embedded broker:
        once the row is deleted)."""

        def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
            message = self.qos.get(delivery_tag)
            super().basic_ack(delivery_tag, multiple)
            _log("A", message.headers["id"])

    return RecordingChannel


class RecordingTransport(broker.Transport):
    Channel = _recording(broker.Channel)


class RecordingFilesystemTransport(filesystem.Transport):
    Channel = _recording(filesystem.Channel)


app = Celery("stress")
app.config_from_object("django.conf:settings", namespace="CELERY")  # the real settings


def _override(**options: Any) -> None:
    # Keys read from Django carry the CELERY_ prefix and win over unprefixed ones.
    app.conf.update({f"CELERY_{key.upper()}": value for key, value in options.items()})


if BROKER == "filesystem":
    folder = Path(os.environ["MEDCHAIN_VAR_DIR"]) / "fs-broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    pausing = bool(os.environ.get("STRESS_PAUSE"))
    _override(
        broker_url="filesystem://localhost//",
        broker_transport=f"{__name__}:"
        + ("PausingTransport" if pausing else "RecordingFilesystemTransport"),
        # What portal/settings.py configured before this broker existed.
        broker_transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        },
    )
else:
    _override(broker_transport=f"{__name__}:RecordingTransport")


@worker_ready.connect
def _ready(sender: Any, **_: Any) -> None:
    _log("R", sender.hostname.split("@")[0])


@app.task(
    name="stress.record",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def record(event: dict[str, Any]) -> None:
    body = {k: v for k, v in event.items() if k != "sha256"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    _log("P" if digest == event["sha256"] else "C", record.request.id)
    global _done
    _done += 1
    if _done == int(os.environ.get("STRESS_STALL_AFTER", "0")):
        # Done but not yet acknowledged, as a long task is: the harness kills it here.
        _log("S", record.request.id)
        time.sleep(600)


_done = 0


def progress_event(producer: int, seq: int, rng: random.Random) -> dict[str, Any]:
    """What a node streams during training: a few hundred bytes to 2 KB of JSON."""
    event: dict[str, Any] = {
        "round": str(uuid.UUID(int=rng.getrandbits(128))),
        "node": "0x" + rng.randbytes(32).hex(),
        "producer": producer,
        "seq": seq,
        "epoch": seq // 50,
        "loss": rng.uniform(0.01, 3.0),
        "images_per_s": rng.uniform(5, 40),
        "eta_s": rng.randint(0, 3600),
        "boxes": [
            [rng.randint(0, 200), rng.randint(0, 200), 210, 220] for _ in range(rng.randint(0, 30))
        ],
        "note": 'Ré-échantillonnage — 放射線 ✓ "quoted" \\ back\nslash',
    }
    event["sha256"] = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
    return event


def produce(index: int, count: int) -> None:
    rng = random.Random(index)
    for seq in range(count):
        record.apply_async(
            args=[progress_event(index, seq, rng)], task_id=f"{index}-{seq}", queue=QUEUE
        )


@dataclass
class Report:
    """What the log and the consumers say after a run."""

    expected: set[str]
    processed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    acked: set[str] = field(default_factory=set)
    after_ack: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    died: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def lost(self) -> set[str]:
        return self.expected - set(self.processed)

    @classmethod
    def read(cls, log: Path, expected: set[str]) -> Report:
        report = cls(expected=expected)
        for line in log.read_text().splitlines() if log.exists() else []:
            kind, message_id, pid = line.split()
            if kind == "P":
                report.processed[message_id].append(pid)
                if message_id in report.acked:
                    report.after_ack.append(message_id)
            elif kind == "A":
                report.acked.add(message_id)
            elif kind == "S":
                report.stalled.append(message_id)
            elif kind == "R":
                report.ready.append(message_id)
            else:
                report.corrupted.append(message_id)
        return report

    def problems(self) -> list[str]:
        out = []
        if self.died:
            out.append(f"consumers died on their own: {'; '.join(self.died)}")
        if self.lost:
            out.append(f"{len(self.lost)} message(s) lost, e.g. {sorted(self.lost)[:5]}")
        unacked = self.expected - self.acked
        if unacked:
            out.append(f"{len(unacked)} message(s) never acknowledged, e.g. {sorted(unacked)[:5]}")
        if self.after_ack:
            out.append(f"processed again after their ack: {sorted(set(self.after_ack))[:5]}")
        if self.corrupted:
            out.append(f"corrupted payloads: {self.corrupted[:5]}")
        return out


@dataclass
class Consumer:
    """One `celery worker` process of the harness's app, restartable."""

    name: str
    pool: list[str]
    env: dict[str, str]
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}-{self.runs}.log"

    def start(self, **env: str) -> None:
        self.runs += 1
        celery = str(Path(sys.executable).parent / "celery")
        argv = [celery, "-A", "broker_stress", "worker", "-Q", QUEUE, "-n", f"{self.name}@%h",
                *self.pool, "--without-mingle", "--without-gossip", "--without-heartbeat",
                "--loglevel", os.environ.get("STRESS_LOGLEVEL", "WARNING")]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def died_on_its_own(self) -> str | None:
        assert self.proc is not None
        rc = self.proc.poll()
        text = self.log.read_text(errors="replace")
        if rc is not None or "Unrecoverable error" in text:
            last = [line for line in text.splitlines() if "rror" in line][-1:] or [f"rc {rc}"]
            return f"{self.name} ({self.log.name}): {last[0]}"
        return None

    def stop(self, *, wait: bool = True) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # warm shutdown
        if not wait:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(
    work: Path,
    *,
    producers: int,
    count: int,
    broker: str = "embedded",
    pause: float = 0.0,
    stall_after: int = 300,
    deadline_s: float = 120.0,
    stall_s: float = 10.0,
) -> Report:
    """Two consumers, a prefork worker and a solo one, and `producers` processes sending
    `count` messages each. The solo consumer stalls inside its `stall_after`-th task,
    after the work and before the acknowledgement, and is SIGKILLed there, then started
    again."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "events.log"
    here = Path(__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "REDIS_URL")}
    env.update(
        STRESS_LOG=str(log),
        STRESS_BROKER=broker,
        MEDCHAIN_VAR_DIR=str(work / "var"),
        PYTHONPATH=os.pathsep.join([str(here), str(here.parents[2]), env.get("PYTHONPATH", "")]),
    )
    steady = Consumer("steady", ["--pool", "prefork", "--concurrency", "2"], env, work)
    victim = Consumer("killed", ["--pool", "solo"], env, work)
    expected = {f"{i}-{s}" for i in range(producers) for s in range(count)}
    report = Report(expected=expected)
    procs: list[subprocess.Popen[bytes]] = []
    timings: dict[str, float] = {}
    start = time.monotonic()
    try:
        steady.start()
        victim.start(STRESS_STALL_AFTER=str(stall_after))
        while len(Report.read(log, expected).ready) < 2 and time.monotonic() - start < 60:
            time.sleep(0.1)
        timings["ready"] = time.monotonic() - start
        argv = [sys.executable, str(Path(__file__)), "produce"]
        producer_env = {**env, "STRESS_PAUSE": str(pause)} if pause else env
        procs = [
            subprocess.Popen([*argv, str(i), str(count)], env=producer_env)
            for i in range(producers)
        ]
        last_change, seen = start, -1
        while time.monotonic() - start < deadline_s:
            time.sleep(0.2)
            report = Report.read(log, expected)
            if len(report.processed) != seen:
                seen, last_change = len(report.processed), time.monotonic()
            if report.stalled and "killed" not in timings:
                victim.kill()
                timings["killed"] = time.monotonic() - start
                victim.start()
            finished = all(p.poll() is not None for p in procs)
            if finished and "produced" not in timings:
                timings["produced"] = time.monotonic() - start
                last_change = time.monotonic()  # a stall counts from here at the earliest
            if finished and report.acked >= expected:
                timings["acked"] = time.monotonic() - start
                break
            if all(c.died_on_its_own() for c in (steady, victim)):
                break
            if finished and time.monotonic() - last_change > stall_s:
                break
        report.died = [d for c in (steady, victim) if (d := c.died_on_its_own())]
        if "killed" not in timings:
            report.died.append("the consumer to kill never reached its stalled task")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for c in (steady, victim):
            c.stop(wait=False)
        for c in (steady, victim):
            c.stop()
        timings["stopped"] = time.monotonic() - start
    final = Report.read(log, expected)
    final.died, final.timings = report.died, timings
    return final


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["produce"])
    parser.add_argument("index", type=int)
    parser.add_argument("count", type=int)
    args = parser.parse_args()
    produce(args.index, args.count)


if __name__ == "__main__":
    main()
