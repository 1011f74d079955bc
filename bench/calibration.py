"""Phantom calibration: is the synthetic task hard enough for federated training to show?

The small detector (``fcos_tiny``) is trained from scratch by the engine
(``training.detection.engine.train``), once on the three founding hospitals'
phantoms pooled ("central"), and once on each hospital's own phantoms alone,
every run seeing the same number of training images (a hospital alone makes
more passes over its smaller set). Every model is scored on the same pooled
held-out slices with mAP@0.5.

These are exactly the federated quality bench's ``centralized`` and ``local``
contestants, at its budget, its phantoms and its loop (``bench/federated_quality.py``
holds the one budget): the calibration is only worth anything if it is taken
where the federated comparison is made.

The phantoms are calibrated when central lands between 0.6 and 0.9 (learnable
but not trivial) and each hospital alone lands clearly below it (its scanner
and lesion mix do not cover the others'): that gap is what federated training
has to close. Run alone:

    PYTHONPATH=. python bench/calibration.py [--quick] [--threads T]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make the project's packages importable
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import federated_quality  # noqa: E402
import torch  # noqa: E402


def run(*, quick: bool = False, seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """Central and each hospital alone at the quality bench's budget; their mAP@0.5."""
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    measured = federated_quality.measure(quick=quick, seed=seed, only=("centralized", "local"))
    return {
        "settings": {
            "model": "fcos_tiny",
            **dataclasses.asdict(measured.budget),
            "total_steps": measured.budget.total_steps,
            "seed": seed,
            "threads": torch.get_num_threads(),
        },
        "scores": {k: round(v, 4) for k, v in measured.scores.items()},
        "train_s": measured.seconds,
        "wall_s": round(time.perf_counter() - started, 1),
        "figures": federated_quality.calibration_figures(measured),
    }


def figures(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Bench rows: central mAP@0.5 against no baseline, each hospital alone against central."""
    rows: dict[str, dict[str, Any]] = result["figures"]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, not figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    result = run(quick=args.quick, seed=args.seed, threads=args.threads)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
