"""Federated quality: FedAvg against centralized training and each hospital alone.

Three hospitals' phantoms (profiles hospital-a, -b, -c: different scanners and
lesion mixes, so non-IID), split by the node's own ``node_sets``. Every
contestant sees the same number of training images:

- **federated**: ``training.federated.simulate`` (the nodes' code path: train,
  update file, checks, aggregate, the server's step), R rounds per hospital of
  its S batches of 8 taken ``--federated-batch`` (4) at a time, each hospital
  carrying its optimizer state from round to round, the aggregate applied at the
  server rate ``--server-lr`` (ramped in over ``--server-lr-ramp`` rounds), with
  SCAFFOLD's drift control with ``--drift-control``;
- **centralized**: one ``engine.train`` over the pooled training sets, R x 3 x S steps,
  cosine learning rate from the same peak;
- **local only**: each hospital alone, R x 3 x S steps on its own data;
- **robust rules** without attackers: median, trimmed mean (beta 1/3, which for
  three updates cuts one from each side), Krum (f = 0) and Multi-Krum (keep 2),
  federated exactly as FedAvg.

The score is mAP@0.5 (the engine's default, torchmetrics over pycocotools) of
each final model on the pooled held-out set (every hospital's validation
split). Targets (issue 11): federated >= 0.95x centralized (goal 0.99x);
federated - best local-only >= 0.05. Phantom settings are ``phantoms.PROFILES``
as they stand. ``--quick`` is a smaller version of the same comparison. The
centralized and local-only contestants are also the phantom calibration
(``bench/calibration.py``): one budget, ``FULL``, serves both.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.detection.config import TrainingConfig  # noqa: E402
from training.detection.engine import StateDict, train  # noqa: E402
from training.federated.simulate import (  # noqa: E402
    RoundReport,
    held_out_score,
    make_hospitals,
    pooled,
    simulate,
)
from training.ingest.phantoms import PROFILES  # noqa: E402

LR = 2e-3  # AdamW's peak local rate, every contestant
SERVER_LR = 1.0  # the federated contestants' server rate (training/federated/server.py)
SERVER_LR_RAMP = 0  # rounds over which the server rate rises from 1 to SERVER_LR
FEDERATED_BATCH = 4  # a hospital's local batch: each round's 8-image batches taken 4 at a time
DRIFT_CONTROL = False  # SCAFFOLD's correction of the local steps (training/federated/drift.py)
CALIBRATION_RANGE = (0.6, 0.9)  # centralized mAP@0.5 at the bench budget (issue 11, item 8)
RATIO_TARGET = 0.95
RATIO_GOAL = 0.99
MARGIN_TARGET = 0.05
HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
PHANTOMS = ROOT / "var" / "bench-federated-quality"  # generated once, read back by later runs
ROBUST: dict[str, tuple[str, dict[str, Any]]] = {
    "median": ("median", {}),
    "trimmed_mean": ("trimmed_mean", {"beta": 1 / 3}),
    "krum": ("krum", {"f": 0, "keep": 1}),
    "multi_krum": ("krum", {"f": 0, "keep": 2}),
}


@dataclass(frozen=True)
class Budget:
    """The one budget every contestant and the phantom calibration train at."""

    image_size: int
    images: int  # phantoms per hospital, 80 % training and 20 % held out
    rounds: int
    steps: int  # steps of ``batch_size`` per round per hospital
    batch_size: int = 8
    federated_batch: int = FEDERATED_BATCH

    def __post_init__(self) -> None:
        if self.batch_size % self.federated_batch:
            raise ValueError(
                f"federated batch {self.federated_batch} must divide {self.batch_size}"
            )

    @property
    def total_steps(self) -> int:
        """The centralized and local-only contestants' steps: R x 3 x S."""
        return self.rounds * len(HOSPITALS) * self.steps

    @property
    def local_steps(self) -> int:
        """A hospital's steps per round: its S batches split into ``federated_batch``-sized
        ones, the same images in more, smaller steps (docs/federated.md says why)."""
        return self.steps * self.batch_size // self.federated_batch

    def images_seen(self, federated: bool) -> int:
        """Training images one contestant sees: the same either way."""
        if federated:
            return self.rounds * len(HOSPITALS) * self.local_steps * self.federated_batch
        return self.total_steps * self.batch_size


FULL = Budget(image_size=256, images=500, rounds=10, steps=20)
QUICK = Budget(image_size=128, images=40, rounds=2, steps=3)


def budget(
    quick: bool = False,
    *,
    rounds: int | None = None,
    steps: int | None = None,
    federated_batch: int | None = None,
) -> Budget:
    base = QUICK if quick else FULL
    return dataclasses.replace(
        base,
        rounds=rounds or base.rounds,
        steps=steps or base.steps,
        federated_batch=federated_batch or base.federated_batch,
    )


def bench_config(b: Budget, *, lr: float = LR, seed: int = 0) -> TrainingConfig:
    """The local training config of every contestant (the federated rounds replace its
    seed, steps and rate per round; ``simulate`` says how)."""
    return TrainingConfig(
        image_size=b.image_size,
        batch_size=b.batch_size,
        optimizer="adamw",
        lr=lr,
        warmup_steps=min(100, b.total_steps // 10),  # FedAvg warms up in its first round
        validation_fraction=0.2,
        seed=seed,
    )


@dataclass
class Measured:
    budget: Budget
    hospitals: list[str]
    scores: dict[str, float] = field(default_factory=dict)  # a federated one: the draws' mean
    seconds: dict[str, float] = field(default_factory=dict)
    draws: dict[str, list[float]] = field(default_factory=dict)  # by order seed, in order


CONTESTANTS = ("fedavg", "centralized", "local", *ROBUST)


def measure(
    *,
    quick: bool = False,
    seed: int = 0,
    lr: float = LR,
    server_lr: float = SERVER_LR,
    server_lr_ramp: int = SERVER_LR_RAMP,
    rounds: int | None = None,
    steps: int | None = None,
    federated_batch: int | None = None,
    drift_control: bool = DRIFT_CONTROL,
    order_seeds: tuple[int, ...] | None = None,
    only: tuple[str, ...] = CONTESTANTS,
    phantoms: Path = PHANTOMS,
) -> Measured:
    """Train every contestant in ``only`` at one budget; their pooled held-out mAP@0.5.

    ``order_seeds`` (default ``(seed,)``) seed the federated hospitals' local data orders
    alone, keeping the phantoms and the initial model: each is a draw of the same run, and
    a federated contestant's score is the mean of its draws (docs/federated.md shows how far
    one draw lands from another at this budget)."""
    draws = (seed,) if not order_seeds else tuple(order_seeds)
    b = budget(quick, rounds=rounds, steps=steps, federated_batch=federated_batch)
    config = bench_config(b, lr=lr, seed=seed)
    federated_config = dataclasses.replace(config, batch_size=b.federated_batch)
    began = time.perf_counter()
    phantoms.mkdir(parents=True, exist_ok=True)
    hospitals = make_hospitals(
        [PROFILES[n] for n in HOSPITALS], config, images=b.images, seed=seed, work=phantoms
    )
    held_out = pooled([h.held_out for h in hospitals])
    measured = Measured(b, [h.name for h in hospitals])
    print(
        f"federated quality: {len(hospitals)} hospitals "
        f"({', '.join(f'{h.name} {len(h.train_set)}' for h in hospitals)} training images), "
        f"held-out {len(held_out)}, {b.image_size}px; federated {b.rounds} rounds x "
        f"{b.local_steps} steps of {b.federated_batch}, server rate {server_lr:g} (ramp "
        f"{server_lr_ramp}), drift control {'on' if drift_control else 'off'}; "
        f"others {b.total_steps} steps of {b.batch_size}; "
        f"{b.images_seen(True)} images for every contestant [{time.perf_counter() - began:.0f} s]",
        flush=True,
    )

    def score(name: str, state: StateDict, t0: float) -> None:
        measured.scores[name] = held_out_score(config, state, held_out)
        measured.seconds[name] = round(time.perf_counter() - t0, 1)
        _say(name, measured.scores[name], began)

    with tempfile.TemporaryDirectory(prefix="medchain-bench-fedq-") as tmp:

        def federated(name: str, rule: str, options: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            finals = []
            for draw in draws:
                label = name if len(draws) == 1 else f"{name} (order seed {draw})"
                result = simulate(
                    hospitals, dataclasses.replace(federated_config, drift_control=drift_control),
                    rounds=b.rounds, steps=b.local_steps, rule=rule, options=options,
                    seed=draw, server_lr=server_lr, server_lr_ramp=server_lr_ramp,
                    work=Path(tmp) / name / str(draw), held_out=held_out, device="cpu",
                    on_round=functools.partial(_say_round, label, began),
                )  # fmt: skip
                finals.append(result.rounds[-1].score)
            measured.draws[name] = finals
            measured.scores[name] = sum(finals) / len(finals)
            measured.seconds[name] = round(time.perf_counter() - t0, 1)
            if len(finals) > 1:
                _say(f"{name}, mean of {len(finals)} draws (min {min(finals):.4f}, max "
                     f"{max(finals):.4f})", measured.scores[name], began)  # fmt: skip

        alone = dataclasses.replace(config, max_steps=b.total_steps, scheduler="cosine")
        if "fedavg" in only:
            federated("fedavg", "fedavg", {})
        if "centralized" in only:
            t0 = time.perf_counter()
            both = pooled([h.train_set for h in hospitals], augmentation=config.augmentation)
            score("centralized", train(alone, both, device="cpu").state, t0)
        if "local" in only:
            for h in hospitals:
                t0 = time.perf_counter()
                score(f"local_{h.name}", train(alone, h.train_set, device="cpu").state, t0)
        for name, (rule, options) in ROBUST.items():
            if name in only:
                federated(name, rule, options)
    print(f"{time.perf_counter() - began:.0f} s, {torch.get_num_threads()} threads", flush=True)
    return measured


def run(**kwargs: Any) -> dict[str, dict[str, Any]]:
    """The bench rows of :func:`measure` (those whose contestants ran)."""
    return figures(measure(**kwargs))


def _say_round(label: str, began: float, report: RoundReport) -> None:
    _say(f"{label} round {report.round}", report.score, began)


def _say(name: str, score: float, began: float) -> None:
    print(f"  {name}: mAP@0.5 {score:.4f} [{time.perf_counter() - began:.0f} s]", flush=True)


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 4) if baseline > 0 else None


def figures(measured: Measured) -> dict[str, dict[str, Any]]:
    """The rows whose contestants ran (``--only`` may leave some out), calibration's included."""
    scores, hospitals = measured.scores, measured.hospitals
    figures: dict[str, dict[str, Any]] = calibration_figures(measured)
    fed = scores.get("fedavg")
    notes = []
    if fed is not None and "centralized" in scores:
        central = scores["centralized"]
        figures["federated_vs_centralized_map50"] = {
            "value": round(fed, 4),
            "baseline": round(central, 4),
            "ratio": _ratio(fed, central),
            "unit": "mAP@0.5",
        }
        ratio = fed / central if central > 0 else math.nan
        verdict = "meets" if ratio >= RATIO_TARGET else "misses"
        notes.append(f"federated/centralized {ratio:.3f} ({verdict} >= {RATIO_TARGET})")
    locals_ = [scores[f"local_{h}"] for h in hospitals if f"local_{h}" in scores]
    if fed is not None and len(locals_) == len(hospitals):
        best = max(locals_)
        figures["federated_minus_best_local_map50"] = {
            "value": round(fed - best, 4),
            "baseline": round(best, 4),
            "ratio": _ratio(fed, best),
            "unit": "mAP@0.5",
        }
        verdict = "meets" if fed - best >= MARGIN_TARGET else "misses"
        notes.append(f"federated - best local {fed - best:+.3f} ({verdict} >= {MARGIN_TARGET})")
    for name in ROBUST:
        if fed is not None and name in scores:
            figures[f"robust_{name}_vs_fedavg_map50"] = {
                "value": round(scores[name], 4),
                "baseline": round(fed, 4),
                "ratio": _ratio(scores[name], fed),
                "unit": "mAP@0.5",
            }
    if notes:
        print("; ".join(notes), flush=True)
    return figures


def calibration_figures(measured: Measured) -> dict[str, dict[str, Any]]:
    """Issue 11's calibration at this budget: centralized within [0.6, 0.9], each hospital
    alone clearly below it (``calibration_<who>_map50``, a hospital's against centralized)."""
    scores = measured.scores
    central = scores.get("centralized")
    rows: dict[str, dict[str, Any]] = {}
    if central is not None:
        rows["calibration_central_map50"] = {
            "value": round(central, 4), "baseline": None, "ratio": None, "unit": "mAP@0.5",
        }  # fmt: skip
        low, high = CALIBRATION_RANGE
        verdict = "within" if low <= central <= high else "outside"
        print(f"calibration: centralized {central:.3f} ({verdict} {low}-{high})", flush=True)
    for h in measured.hospitals:
        if f"local_{h}" in scores:
            value = scores[f"local_{h}"]
            rows[f"calibration_{h.replace('-', '_')}_map50"] = {
                "value": round(value, 4),
                "baseline": None if central is None else round(central, 4),
                "ratio": None if central is None else _ratio(value, central),
                "unit": "mAP@0.5",
            }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="128 px, 2 rounds x 3 steps: a smoke run"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=LR, help="local peak rate (AdamW)")
    parser.add_argument(
        "--server-lr", type=float, default=SERVER_LR, help="the federated contestants' server rate"
    )
    parser.add_argument(
        "--server-lr-ramp",
        type=int,
        default=SERVER_LR_RAMP,
        help="rounds over which the server rate rises from 1 (0: constant)",
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--steps", type=int, help="batches of 8 per round per hospital")
    parser.add_argument(
        "--federated-batch",
        type=int,
        help=f"a hospital's local batch, dividing 8 (default {FEDERATED_BATCH})",
    )
    parser.add_argument(
        "--drift-control",
        action=argparse.BooleanOptionalAction,
        default=DRIFT_CONTROL,
        help="steer the federated contestants' local steps by SCAFFOLD's control variates",
    )
    parser.add_argument(
        "--order-seeds",
        type=int,
        nargs="+",
        help="seeds of the federated local data orders alone, one run each, scored by their "
        "mean (default: --seed)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=CONTESTANTS, default=list(CONTESTANTS), help="contestants"
    )
    parser.add_argument("--phantoms", type=Path, default=PHANTOMS, help="phantom cache folder")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(
        quick=args.quick,
        seed=args.seed,
        lr=args.lr,
        server_lr=args.server_lr,
        server_lr_ramp=args.server_lr_ramp,
        rounds=args.rounds,
        steps=args.steps,
        federated_batch=args.federated_batch,
        drift_control=args.drift_control,
        order_seeds=tuple(args.order_seeds) if args.order_seeds else None,
        only=tuple(args.only),
        phantoms=args.phantoms,
    )
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
