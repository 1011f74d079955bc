"""What a soak run of the demo stack did, read from its logs and the demo's own output.

Celery logs every task a worker takes ("Task name[id] received") and how it
ended ("succeeded in", "raised unexpected"); beat logs every message it sends
("Sending due task"); daphne logs every answer with its status. The demo prints
one line per child that exits and per restart (portal/core/supervise.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECEIVED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] received")
SUCCEEDED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] succeeded in [\d.e-]+s: (.*)$")
FAILED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] raised unexpected")
EXPIRED = re.compile(r"Discarding revoked task: ([\w.]+)\[")
SENT_BY_BEAT = re.compile(r"Scheduler: Sending due task .+ \(([\w.]+)\)")
HTTP_5XX = re.compile(r'" (5\d\d) \d+\s*$')
ERROR = re.compile(
    r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)|Unrecoverable error"
    r"|Internal Server Error"
)
EXITED = re.compile(r"(\w+) exited with code (-?\d+); restarting")
RESTARTED = re.compile(r"(\w+) restarted \(pid \d+\)")
CRASH_LOOP = re.compile(r"(\w+) crashed \d+ times within")
SAMPLES = 20


@dataclass
class SoakReport:
    received: dict[str, int] = field(default_factory=dict)
    succeeded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    sent_by_beat: int = 0
    check_ins_requested: int = 0
    check_ins_done: int = 0
    http_5xx: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    exits: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    crash_loop: str | None = None

    @property
    def messages(self) -> int:
        return sum(self.received.values())

    @property
    def unaccounted(self) -> int:
        """Sent (by beat, and check-ins asked of the node) but never taken by a worker.

        A message sent in the last moment before the stop counts too, so a
        clean run may show one or two.
        """
        sent = self.sent_by_beat + self.check_ins_requested
        return max(0, sent - self.messages)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(messages=self.messages, unaccounted=self.unaccounted)
        return data


def read_logs(log_dir: Path, report: SoakReport) -> None:
    """Count tasks, beat messages, 5xx answers and error lines in every *.log of `log_dir`."""
    received: Counter[str] = Counter()
    succeeded: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    expired: Counter[str] = Counter()
    for log in sorted(log_dir.glob("*.log")):
        name = log.stem
        with log.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if RECEIVED.search(line):
                    received[name] += 1
                elif found := SUCCEEDED.search(line):
                    succeeded[name] += 1
                    if found.group(1) == "nodes.request_check_ins":
                        report.check_ins_requested += int(found.group(2) or 0)
                    elif found.group(1) == "nodes.check_in":
                        report.check_ins_done += 1
                elif FAILED.search(line):
                    failed[name] += 1
                elif EXPIRED.search(line):
                    expired[name] += 1
                elif SENT_BY_BEAT.search(line):
                    report.sent_by_beat += 1
                if HTTP_5XX.search(line):
                    report.http_5xx += 1
                if ERROR.search(line) or HTTP_5XX.search(line):
                    report.errors += 1
                    if len(report.error_samples) < SAMPLES:
                        report.error_samples.append(f"{log.name}:{number}: {line.strip()[:300]}")
    report.received, report.succeeded = dict(received), dict(succeeded)
    report.failed, report.expired = dict(failed), dict(expired)


def read_demo_output(lines: list[str], report: SoakReport) -> None:
    """Exits, restarts and a crash loop, as the demo printed them."""
    report.exits = dict(Counter(m.group(1) for line in lines if (m := EXITED.search(line))))
    report.restarts = dict(Counter(m.group(1) for line in lines if (m := RESTARTED.search(line))))
    for line in lines:
        if found := CRASH_LOOP.search(line):
            report.crash_loop = found.group(0)
