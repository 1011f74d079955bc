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
    args = parser.parse_args()

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

        results = [chain_sync.run(events=args.events, repeats=args.repeats)]
    finally:
        anvil.stop()

    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(results, args.out)
    return 0


def _print_table(results: list[dict[str, object]], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MedChain benchmarks (written to {out})")
    for column in ("benchmark", "events", "baseline ev/s", "mirror ev/s", "mirror / baseline"):
        table.add_column(column, justify="right" if column != "benchmark" else "left")
    for r in results:
        table.add_row(
            str(r["name"]),
            str(r["events"]),
            f"{r['baseline_events_per_s']:,}",
            f"{r['mirror_events_per_s']:,}",
            f"{r['mirror_vs_baseline']:.3f}",
        )
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
