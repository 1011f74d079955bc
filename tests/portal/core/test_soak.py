"""The soak report, read from log lines as Celery, beat, daphne and the demo write them."""

from __future__ import annotations

from pathlib import Path

from portal.core.soak import SoakReport, read_demo_output, read_logs

TASK = "[2026-11-30 15:45:00,958: INFO/MainProcess] Task {name}[659f4445-3a09-4d9e-a2f8-{n:012x}]"
WORKER = [
    "celery@host v5.5.3 (immunity)",
    TASK.format(name="core.chain_sync", n=1) + " received",
    TASK.format(name="core.chain_sync", n=1) + " succeeded in 0.0073s: 0",
    TASK.format(name="nodes.request_check_ins", n=2) + " received",
    TASK.format(name="nodes.request_check_ins", n=2) + " succeeded in 0.01s: 1",
    TASK.format(name="core.chain_sync", n=3) + " received",
    "[2026-11-30 15:45:01,000: ERROR/ForkPoolWorker-1] Task core.chain_sync"
    "[659f4445-3a09-4d9e-a2f8-000000000003] raised unexpected: ValueError('x')",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "ValueError: x",
]
NODE = [
    TASK.format(name="nodes.check_in", n=4) + " received",
    TASK.format(name="nodes.check_in", n=4) + " succeeded in 1.58s: '2026-11-30T15:44:57.961227Z'",
    "[2026-11-30 15:46:00,000: INFO/MainProcess] Discarding revoked task: "
    "nodes.check_in[659f4445-3a09-4d9e-a2f8-000000000005].",
]
BEAT = [
    "[2026-11-30 15:44:59,792: INFO/MainProcess] Scheduler: Sending due task chain sync "
    "(core.chain_sync)",
    "[2026-11-30 15:45:00,624: INFO/MainProcess] Scheduler: Sending due task ask nodes to "
    "check in (nodes.request_check_ins)",
    "[2026-11-30 15:45:00,796: INFO/MainProcess] Scheduler: Sending due task chain sync "
    "(core.chain_sync)",
]
WEB = [
    '127.0.0.1:38420 - - [30/Nov/2026:15:44:30] "GET /health" 200 290',
    '127.0.0.1:41284 - - [30/Nov/2026:15:44:41] "POST /api/v1/nodes/check-in/" 500 145',
]


def _logs(folder: Path) -> Path:
    folder.mkdir()
    for name, lines in {"worker": WORKER, "node": NODE, "beat": BEAT, "web": WEB}.items():
        (folder / f"{name}.log").write_text("\n".join(lines) + "\n")
    return folder


def test_it_counts_messages_failures_and_what_was_sent(tmp_path: Path):
    report = SoakReport()
    read_logs(_logs(tmp_path / "log"), report)
    assert report.received == {"worker": 3, "node": 1}
    assert report.succeeded == {"worker": 2, "node": 1}
    assert report.failed == {"worker": 1}
    assert report.expired == {"node": 1}
    assert (report.sent_by_beat, report.check_ins_requested, report.check_ins_done) == (3, 1, 1)
    assert report.messages == 4 and report.unaccounted == 0


def test_it_counts_error_lines_tracebacks_and_5xx_answers(tmp_path: Path):
    report = SoakReport()
    read_logs(_logs(tmp_path / "log"), report)
    assert report.http_5xx == 1
    assert report.errors == 3  # the failed task, its traceback, the 500
    assert report.error_samples[0].startswith("web.log:2: ")
    assert report.error_samples[1].startswith("worker.log:7: ")


def test_it_reads_exits_restarts_and_a_crash_loop_from_the_demo():
    report = SoakReport()
    read_demo_output(
        [
            "✓ Starting the chain (anvil) (0.9 s)",
            "↻ worker exited with code -9; restarting in 1 s (crash 1 of 5 allowed within "
            "60 s) — its log: var/log/worker.log",
            "↻ worker restarted (pid 4242) — its log: var/log/worker.log",
            "↻ node exited with code 1; restarting in 1 s (crash 1 of 5 allowed within 60 s)",
            "Stopping: node crashed 5 times within 60 s (last exit code 1): see var/log/node.log",
        ],
        report,
    )
    assert report.exits == {"worker": 1, "node": 1}
    assert report.restarts == {"worker": 1}
    assert report.crash_loop == "node crashed 5 times within"
