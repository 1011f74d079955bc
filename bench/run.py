"""`make bench`: run the benchmarks on private anvil nodes and databases (SQLite, and for
the load bench a fresh PostgreSQL database), write var/bench.json and print a table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the project's packages importable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench.json")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=[
            "chain-sync",
            "ingest",
            "browser-upload",
            "broker",
            "training-speed",
            "aggregation",
            "load",
            "calibration",
            "federated-quality",
        ],
        help="run one benchmark",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs of every bench: spot checks, not figures"
    )
    parser.add_argument("--ingest-files", type=int, default=2048, help="512x512 CT slices")
    parser.add_argument("--broker-producers", type=int, default=4)
    parser.add_argument("--broker-messages", type=int, default=2500, help="per producer")
    parser.add_argument("--training-steps", type=int, default=20)
    parser.add_argument(
        "--training-large",
        action="store_true",
        help="also time fasterrcnn_resnet50_fpn_v2 (a GPU node's model; slow on a CPU)",
    )
    parser.add_argument("--training-large-steps", type=int, default=10)
    parser.add_argument(
        "--aggregation-quick", action="store_true", help="aggregate the small model only"
    )
    parser.add_argument("--calibration-threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--calibration-quick", action="store_true", help="a smoke run: seconds, not figures"
    )
    parser.add_argument(
        "--federated-quality-quick",
        action="store_true",
        help="the federated quality bench's quick mode (minutes, not half an hour)",
    )
    args = parser.parse_args()
    if args.quick:  # one switch for every bench's spot-check size
        args.aggregation_quick = args.calibration_quick = args.federated_quality_quick = True
        args.ingest_files = min(args.ingest_files, 128)
        args.broker_messages = min(args.broker_messages, 250)
        args.training_steps = min(args.training_steps, 5)
        args.events = min(args.events, 100)
        args.repeats = 1

    results: list[dict[str, Any]] = []
    figures: dict[str, dict[str, Any]] = {}
    if args.only in (None, "ingest"):
        import ingest  # runs its timed parts in subprocesses that never import torch

        figures.update(ingest.run(files=args.ingest_files))
    if args.only in (None, "browser-upload"):
        import browser_upload  # Debian's chromium; the page's modules against the CLI's

        figures.update(browser_upload.run())
    if args.only in (None, "broker"):
        import broker  # its producers and consumer are processes of their own

        measured = broker.run(producers=args.broker_producers, count=args.broker_messages)
        figures["embedded_broker_messages_per_s"] = measured["figure"]
        results.append({"broker": measured["details"]})
    if args.only in (None, "training-speed"):
        import training_speed  # imports torch: after the benchmarks that must not

        figures.update(training_speed.run(steps=args.training_steps))
        if args.training_large:
            figures.update(
                training_speed.run(
                    model="fasterrcnn_resnet50_fpn_v2", steps=args.training_large_steps, rounds=2
                )
            )
    if args.only in (None, "aggregation"):
        import aggregation  # each model measured in a process of its own

        figures.update(aggregation.run(quick=args.aggregation_quick))
    if args.only in (None, "load"):
        import load  # starts its own stack: PostgreSQL, Redis, anvil and the web tier

        load_figures, load_details = load.run(quick=args.quick)
        figures.update(load_figures)
        results.append({"load": load_details})
    if args.only in (None, "calibration"):
        import calibration  # trains fcos_tiny centrally and at each hospital alone

        # the quality bench's centralized and local-only contestants, at its budget
        measured = calibration.run(quick=args.calibration_quick, threads=args.calibration_threads)
        figures.update(calibration.figures(measured))
        results.append({"calibration": measured})
    if args.only in (None, "federated-quality"):
        import federated_quality  # trains FedAvg, robust rules, centralized and local-only

        figures.update(federated_quality.run(quick=args.federated_quality_quick))
    if args.only in (None, "chain-sync"):
        result = _chain_sync(args)
        results.append(result)
        figures["chain_sync_events_per_s"] = {
            "value": result["mirror_events_per_s"],
            "baseline": result["baseline_events_per_s"],
            "ratio": result["mirror_vs_baseline"],
            "unit": "events/s",
        }

    # var/bench.json holds exactly {name: {value, baseline, ratio, unit}}; the raw runs
    # and the machine they ran on go beside it.
    details = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = _previous_figures(args.out) if args.only else {}
    args.out.write_text(json.dumps({**kept, **figures}, indent=2) + "\n")
    args.out.with_name(args.out.stem + "-details.json").write_text(
        json.dumps(details, indent=2) + "\n"
    )
    _print_figures(figures, args.out)
    return 0


def _previous_figures(out: Path) -> dict[str, dict[str, Any]]:
    """The rows an earlier run wrote: ``--only`` replaces its own and keeps the others."""
    try:
        previous = json.loads(out.read_text())
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _chain_sync(args: argparse.Namespace) -> dict[str, Any]:
    from chain.anvil import ANVIL_DEV_KEYS, AnvilNode

    work = Path(tempfile.mkdtemp(prefix="medchain-bench-"))
    anvil = AnvilNode(state_file=work / "anvil-state.json", port=_free_port())
    anvil.start()
    try:
        # Settings are read once, at setup: point them at the private chain and var dir first.
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "portal.settings",
                "MEDCHAIN_VAR_DIR": str(work / "var"),
                "CHAIN_RPC_URL": anvil.url,
                "CHAIN_RELAYER_KEY": ANVIL_DEV_KEYS[0],
            }
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        import chain_sync

        result: dict[str, Any] = chain_sync.run(events=args.events, repeats=args.repeats)
    finally:
        anvil.stop()
    return result


def _print_figures(figures: dict[str, dict[str, Any]], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MedChain figures (written to {out})")
    for column in ("figure", "value", "baseline", "ratio", "unit"):
        table.add_column(column, justify="left" if column in ("figure", "unit") else "right")
    for name, f in figures.items():
        # A baseline that could not run (Redis not answering) is null: say so.
        baseline = "n/a" if f["baseline"] is None else f"{f['baseline']:,.2f}"
        ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.3f}"
        table.add_row(name, f"{f['value']:,.2f}", baseline, ratio, f["unit"])
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
