"""`make bench`: run the benchmarks on a private anvil node and SQLite database,
write var/bench.json and print a table."""

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
        "--only", choices=["chain-sync", "ingest", "broker"], help="run one benchmark"
    )
    parser.add_argument("--ingest-files", type=int, default=2048, help="512x512 CT slices")
    parser.add_argument("--broker-producers", type=int, default=4)
    parser.add_argument("--broker-messages", type=int, default=2500, help="per producer")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    figures: dict[str, dict[str, Any]] = {}
    if args.only in (None, "ingest"):
        import ingest  # runs its timed parts in subprocesses that never import torch

        figures.update(ingest.run(files=args.ingest_files))
    if args.only in (None, "broker"):
        import broker  # its producers and consumer are processes of their own

        measured = broker.run(producers=args.broker_producers, count=args.broker_messages)
        figures["embedded_broker_messages_per_s"] = measured["figure"]
        results.append({"broker": measured["details"]})
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
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    args.out.with_name(args.out.stem + "-details.json").write_text(
        json.dumps(details, indent=2) + "\n"
    )
    _print_figures(figures, args.out)
    return 0


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
