"""A federation on one machine: N phantom hospitals, R rounds, one aggregation rule.

``python -m training.federated.simulate --hospitals 3 --rounds 5 --rule fedavg``

Each round runs what the nodes and the aggregator run, in the same order: per
hospital, ``engine.train`` from the round's global model over its own
``DetectionSet`` (the reader's, from the hospital's phantom DICOM), then
``make_update`` → ``write_update`` (the canonical file and its hash) →
``load_update`` (every check a node makes on others' files); then
``aggregate`` by the rule's name, ``server_step`` (``apply_delta``) and ``validation_score`` on
the pooled held-out set (every hospital's validation split). Only the chain,
the signatures and the encrypted packages are left out.

Everything is seeded: the phantoms, the split, each hospital's data order in
each round; the aggregate is bit-exact (aggregate.py), and on the CPU the
local runs are too, so two runs with the same arguments end on the same
aggregate hash. Hospital ``k`` takes phantom profile ``k`` of
``phantoms.PROFILES`` (their current defaults: the simulator holds none of
its own) unless ``--profiles`` names them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from training.detection.config import ConfigError, TrainingConfig
from training.detection.engine import (
    Progress,
    StateDict,
    TrainingSet,
    TrainingStopped,
    default_device,
    evaluate,
    node_sets,
    train,
)
from training.detection.models import build_model
from training.detection.reader import (
    Augmentation,
    DetectionSet,
    Instance,
    MemoryCache,
    ReaderError,
    Target,
    read_instances,
)
from training.federated import drift
from training.federated.aggregate import RULES, aggregate
from training.federated.server import (
    DEFAULT_SERVER_LR,
    check_server_lr,
    round_server_lr,
    server_step,
)
from training.federated.updates import (
    Layout,
    UpdateRejected,
    load_update,
    make_update,
    normalisation_keys,
    state_hash,
    write_update,
)
from training.ingest import phantoms
from training.ingest.phantoms import PROFILES, ScannerProfile, write_ct_dataset

LR_SCHEDULES = ("constant", "cosine")
# COCO-style scoring keeps low-confidence detections (torchvision's references score at 0.05);
# FCOS's own default of 0.2 would cut the tail of the precision-recall curve.
EVAL_SCORE_THRESH = 0.05


class SimulationError(ValueError):
    """Arguments a simulation cannot run with; the message says which and why."""


@dataclass(frozen=True)
class Hospital:
    name: str
    train_set: DetectionSet
    held_out: DetectionSet


@dataclass(frozen=True)
class RoundView:
    """A hospital's training set in one round: the local run's epoch ``e`` reads the set's
    epoch ``offset + e``, so an image's augmentation changes from round to round as it
    would across the epochs of one long run (each local run starts at epoch 0)."""

    data: DetectionSet
    offset: int

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, Target]:
        return self.data.sample(index, self.offset + epoch)


@dataclass(frozen=True)
class RoundReport:
    round: int  # from 1
    losses: dict[str, float]  # hospital -> mean training loss over its local steps
    score: float  # the global model's metric on the pooled held-out set
    aggregate_hash: str
    model_hash: str  # state_hash of the global model after the round


@dataclass(frozen=True)
class SimulationResult:
    rounds: list[RoundReport]
    state: StateDict  # the final global model

    @property
    def aggregate_hash(self) -> str:
        return self.rounds[-1].aggregate_hash


def phantom_instances(
    profile: ScannerProfile, *, images: int, image_size: int, seed: int, work: Path
) -> list[Instance]:
    """A hospital's phantom DICOM files, read back by the node's reader.

    Written under ``work`` in a folder named by everything that shapes them (the profile,
    the count, size and seed, and the phantom generator's source), so a folder already
    there is read back instead of generated again (the bench keeps one across runs).
    """
    key = hashlib.sha256(
        repr((profile, images, image_size, seed)).encode() + Path(phantoms.__file__).read_bytes()
    ).hexdigest()[:16]
    folder = work / f"{profile.name}-{seed}-{image_size}px-{images}-{key}"
    annotations = folder / "annotations.json"
    if not annotations.exists():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_ct_dataset(
            partial, profile=profile, count=images, seed=seed, rows=image_size, cols=image_size
        )
        partial.rename(folder)
    return read_instances(sorted(folder.glob("*.dcm")), annotations.read_bytes())


def make_hospitals(
    profiles: Sequence[ScannerProfile],
    config: TrainingConfig,
    *,
    images: int,
    seed: int,
    work: Path,
) -> list[Hospital]:
    """Per profile, ``images`` phantoms split by ``node_sets`` (the config's validation
    fraction); every set shares one decoded cache, so pooling decodes nothing again."""
    if not profiles:
        raise SimulationError("at least one hospital is needed")
    cache = MemoryCache()
    hospitals = []
    for profile in profiles:
        instances = phantom_instances(
            profile, images=images, image_size=config.image_size, seed=seed, work=work
        )
        train_set, held_out = node_sets(config, instances, cache=cache)
        if len(train_set) == 0 or len(held_out) == 0:
            raise SimulationError(
                f"{profile.name}: {images} images leave an empty training or held-out split"
            )
        hospitals.append(Hospital(profile.name, train_set, held_out))
    return hospitals


def pooled(
    sets: Sequence[DetectionSet], *, augmentation: Augmentation | None = None
) -> DetectionSet:
    """One set over several hospitals' instances (same reader settings, shared cache)."""
    first = sets[0]
    return DetectionSet(
        [i for s in sets for i in s.instances],
        classes=first.classes,
        augmentation=augmentation or Augmentation(hflip=0.0),
        seed=first.seed,
        _decoder=first._decoder,
    )


def held_out_score(
    config: TrainingConfig,
    state: StateDict,
    held_out: DetectionSet,
    *,
    device: torch.device | str | None = None,
) -> float:
    """The engine's ``evaluate`` (mAP@0.5) of ``state`` over ``held_out``, detections kept
    down to a score of ``EVAL_SCORE_THRESH``."""
    model = build_model(
        config.model,
        num_classes=len(config.classes),
        image_size=config.image_size,
        seed=config.seed,
    )
    model.load_state_dict(state)
    if hasattr(model, "score_thresh"):
        setattr(model, "score_thresh", EVAL_SCORE_THRESH)  # noqa: B010 (a float, not a Module)
    return evaluate(model, held_out, batch_size=16, device=device).score


def round_lr(lr: float, round_index: int, rounds: int, schedule: str) -> float:
    """The learning rate of round ``round_index`` (from 0): constant, or a cosine across
    rounds taken at the round's middle, so the last round still learns."""
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * (round_index + 0.5) / rounds))


def local_seed(seed: int, round_index: int, hospital: int) -> int:
    """The seed of one hospital's local run in one round (its data order)."""
    digest = hashlib.sha256(f"medchain-sim/1|{seed}|{round_index}|{hospital}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def rule_settings(
    rule: str, options: Mapping[str, Any], *, round_id: int, seed: int
) -> dict[str, Any]:
    """The dispatcher's keyword settings for ``rule`` out of the simulator's options."""
    clip = options.get("clip_norm")
    settings: dict[str, Any] = {} if clip is None else {"clip_norm": clip}
    if rule == "trimmed_mean":
        settings["beta"] = options.get("beta", 0.2)
    elif rule == "krum":
        settings["f"] = options.get("f", 0)
        settings["keep"] = options.get("keep", 1)
    elif rule == "dp_fedavg":
        if clip is None:
            raise SimulationError("dp_fedavg needs --clip-norm")
        settings["noise_multiplier"] = options.get("noise_multiplier", 1.0)
        settings["round_id"] = round_id
        settings["noise_seed"] = hashlib.sha256(f"medchain-sim-noise|{seed}".encode()).digest()
    return settings


def check_rule(rule: str, hospitals: int, options: Mapping[str, Any]) -> None:
    """Refuse, before any training, a rule the dispatcher lacks or cannot run on N updates."""
    if rule not in RULES:
        raise SimulationError(f"unknown rule {rule!r}: one of {', '.join(sorted(RULES))}")
    if rule == "krum":
        f, keep = options.get("f", 0), options.get("keep", 1)
        if f < 0 or hospitals <= 2 * f + 2:
            raise SimulationError(f"krum with f={f} needs more than {2 * f + 2} hospitals")
        if not 1 <= keep <= hospitals:
            raise SimulationError(f"krum keep must be between 1 and {hospitals}, not {keep}")
    if rule == "trimmed_mean" and not 0.0 <= options.get("beta", 0.2) < 0.5:
        raise SimulationError(f"trimmed_mean beta must be in [0, 0.5), not {options['beta']}")
    if rule == "dp_fedavg" and options.get("clip_norm") is None:
        raise SimulationError("dp_fedavg needs --clip-norm")


def simulate(
    hospitals: Sequence[Hospital],
    config: TrainingConfig,
    *,
    rounds: int,
    steps: int,
    rule: str,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    lr_schedule: str = "cosine",
    server_lr: float = DEFAULT_SERVER_LR,
    server_lr_ramp: int = 0,
    keep_optimizer: bool = True,
    augment_by_round: bool = False,
    work: Path,
    held_out: DetectionSet | None = None,
    device: torch.device | str | None = None,
    on_step: Callable[[str, Progress], None] | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> SimulationResult:
    """``rounds`` rounds of ``steps`` local steps per hospital, aggregated by ``rule``.

    ``server_lr`` scales each round's aggregate before it is applied (``server.py``),
    reached in a straight line from 1 over the first ``server_lr_ramp`` rounds.
    With ``keep_optimizer`` each hospital carries its own optimizer state (AdamW's
    moments) from one round to the next, as a node that keeps running would; it stays
    with the hospital and never enters an update. With ``augment_by_round`` round ``r``
    reads its hospital's set through a :class:`RoundView` offset by ``r x steps`` epochs
    (at least one per local step), so no two rounds share an image's augmentation.

    With ``config.fedbn`` the normalisation layers stay out of the updates; the global
    model then keeps the base model's (initial) ones, and a hospital starts each round
    from its own: the score is the global model's, so FedBN's is only indicative here.

    With ``config.drift_control`` each hospital's local steps are steered by SCAFFOLD's
    ``c - c_i`` from round 2 on (``drift.py``): ``c`` read off the last aggregate, ``c_i``
    off the hospital's own last update, which it keeps beside its optimizer state.
    """
    options = dict(options or {})
    check_rule(rule, len(hospitals), options)
    if rounds < 1 or steps < 1:
        raise SimulationError(f"rounds and steps must be at least 1, not {rounds} and {steps}")
    if lr_schedule not in LR_SCHEDULES:
        raise SimulationError(f"lr schedule must be one of {LR_SCHEDULES}, not {lr_schedule!r}")
    try:
        server_lr = check_server_lr(server_lr)
        round_server_lr(server_lr, 0, server_lr_ramp)
    except ValueError as exc:
        raise SimulationError(str(exc)) from exc
    dev = torch.device(device) if device is not None else default_device()
    model = build_model(
        config.model,
        num_classes=len(config.classes),
        image_size=config.image_size,
        seed=config.seed,
    )
    state: StateDict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    local = normalisation_keys(model) if config.fedbn else frozenset()
    parameters = frozenset(name for name, _ in model.named_parameters())
    layout = Layout.of(state, local=local)
    steered = sorted(parameters - local)  # drift control's parameters: those that travel
    own_norm: dict[str, StateDict] = {}
    own_variate: dict[str, dict[str, torch.Tensor]] = {}  # c_i, kept by each hospital
    consortium: dict[str, torch.Tensor] | None = None  # c, from the last aggregate
    own_optimizer: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    evaluation = held_out if held_out is not None else pooled([h.held_out for h in hospitals])
    reports: list[RoundReport] = []
    for r in range(rounds):
        folder = work / f"round-{r + 1:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        updates = []
        losses: dict[str, float] = {}
        for k, hospital in enumerate(hospitals):
            local_config = dataclasses.replace(
                config,
                seed=local_seed(seed, r, k),
                max_steps=steps,
                lr=round_lr(config.lr, r, rounds, lr_schedule),
                scheduler="constant",
                warmup_steps=config.warmup_steps if r == 0 else 0,
                checkpoint_every=0,
            )
            start = {**state, **own_norm.get(hospital.name, {})}
            correction = None
            if config.drift_control and consortium is not None:
                correction = drift.correction(consortium, own_variate.get(hospital.name))
            seen: list[float] = []

            def progress(p: Progress, name: str = hospital.name, seen: list[float] = seen) -> None:
                seen.append(p.loss)
                if on_step is not None:
                    on_step(name, p)

            data: TrainingSet = hospital.train_set
            if augment_by_round:
                data = RoundView(hospital.train_set, r * steps)
            result = train(
                local_config,
                data,
                initial_state=start,
                initial_optimizer_state=own_optimizer.get(hospital.name),
                drift_correction=correction,
                device=dev,
                progress=progress,
            )
            losses[hospital.name] = sum(seen) / len(seen)
            if keep_optimizer:
                own_optimizer[hospital.name] = result.optimizer_state
            if local:
                own_norm[hospital.name] = {k: result.state[k] for k in local}
            delta = make_update(state, result.state, layout)
            if config.drift_control:
                own_variate[hospital.name] = drift.direction(
                    delta, steered, steps=steps, lr=local_config.lr
                )
            path = folder / f"{hospital.name}.safetensors"
            written = write_update(delta, layout, path)
            update = load_update(path, layout, samples=len(hospital.train_set))
            if update.hash != written:
                raise UpdateRejected("format", f"{path.name} changed between write and load")
            updates.append(update)
        combined = aggregate(
            updates, rule=rule, **rule_settings(rule, options, round_id=r + 1, seed=seed)
        )
        combined.write(folder / "aggregate.safetensors")
        if config.drift_control:  # the rule's aggregate, before the server rate
            rate = round_lr(config.lr, r, rounds, lr_schedule)
            consortium = drift.direction(combined.delta, steered, steps=steps, lr=rate)
        state = server_step(
            state,
            combined.delta,
            layout,
            server_lr=round_server_lr(server_lr, r, server_lr_ramp),
            parameters=parameters,
        )
        score = held_out_score(config, state, evaluation, device=dev)
        report = RoundReport(r + 1, losses, score, combined.hash, state_hash(state))
        reports.append(report)
        if on_round is not None:
            on_round(report)
    return SimulationResult(rounds=reports, state=state)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"simulate: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m training.federated.simulate",
        description="Simulate a federation of phantom hospitals, round by round.",
    )
    parser.add_argument("--hospitals", type=int, default=3, help=f"N, 1 to {len(PROFILES)}")
    parser.add_argument(
        "--profiles", help="comma-separated phantom profiles (default: the first N)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rule", default="fedavg", help=f"one of {', '.join(sorted(RULES))}")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--images-per-round", type=int, help="local images per round per hospital")
    budget.add_argument("--steps", type=int, help="local steps per round per hospital")
    parser.add_argument("--images", type=int, default=60, help="phantoms per hospital")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    parser.add_argument(
        "--server-lr",
        type=float,
        default=DEFAULT_SERVER_LR,
        help=f"scale each aggregate by this before applying it (default {DEFAULT_SERVER_LR:g})",
    )
    parser.add_argument(
        "--server-lr-ramp",
        type=int,
        default=0,
        help="rounds over which the server rate rises from 1 to --server-lr (default 0: constant)",
    )
    parser.add_argument(
        "--fresh-optimizer",
        action="store_true",
        help="start each hospital's optimizer afresh every round (default: carried over)",
    )
    parser.add_argument("--model", default="fcos_tiny")
    parser.add_argument("--validation-fraction", type=float, default=0.25)
    parser.add_argument("--fedbn", action="store_true", help="keep normalisation layers local")
    parser.add_argument(
        "--drift-control",
        action="store_true",
        help="steer local steps by SCAFFOLD's control variates (from round 2)",
    )
    parser.add_argument("--beta", type=float, default=0.2, help="trimmed_mean: fraction cut")
    parser.add_argument("--f", type=int, default=0, help="krum: attackers tolerated")
    parser.add_argument("--keep", type=int, default=1, help="krum: >1 is Multi-Krum")
    parser.add_argument("--clip-norm", type=float, help="clip each update to this norm first")
    parser.add_argument("--noise-multiplier", type=float, default=1.0, help="dp_fedavg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--work", type=Path, help="keep updates and aggregates here")
    return parser


def _profiles(args: argparse.Namespace) -> list[ScannerProfile]:
    if args.profiles:
        names = [n.strip() for n in args.profiles.split(",") if n.strip()]
        unknown = [n for n in names if n not in PROFILES]
        if unknown:
            raise SimulationError(
                f"unknown profile(s) {', '.join(unknown)}: one of {', '.join(PROFILES)}"
            )
        if len(names) != args.hospitals:
            raise SimulationError(f"--profiles names {len(names)}, --hospitals is {args.hospitals}")
        return [PROFILES[n] for n in names]
    if not 1 <= args.hospitals <= len(PROFILES):
        raise SimulationError(
            f"--hospitals must be between 1 and {len(PROFILES)} (the phantom profiles), "
            f"not {args.hospitals}"
        )
    return list(PROFILES.values())[: args.hospitals]


def run_cli(args: argparse.Namespace) -> SimulationResult:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {
        "beta": args.beta,
        "f": args.f,
        "keep": args.keep,
        "clip_norm": args.clip_norm,
        "noise_multiplier": args.noise_multiplier,
    }
    profiles = _profiles(args)
    check_rule(args.rule, len(profiles), options)
    if args.rounds < 1:
        raise SimulationError(f"--rounds must be at least 1, not {args.rounds}")
    if not (math.isfinite(args.server_lr) and args.server_lr > 0):
        raise SimulationError(f"--server-lr must be a positive number, not {args.server_lr}")
    if args.server_lr_ramp < 0:
        raise SimulationError(f"--server-lr-ramp must be 0 or more, not {args.server_lr_ramp}")
    config = TrainingConfig(
        model=args.model,
        image_size=args.image_size,
        batch_size=args.batch_size,
        lr=args.lr,
        validation_fraction=args.validation_fraction,
        fedbn=args.fedbn,
        drift_control=args.drift_control,
        seed=args.seed,
    )
    steps = args.steps or math.ceil(
        (args.images_per_round or 4 * args.batch_size) / args.batch_size
    )
    out = Console(soft_wrap=True)
    with tempfile.TemporaryDirectory(prefix="medchain-sim-") as tmp:
        work = args.work or Path(tmp)
        hospitals = make_hospitals(
            profiles, config, images=args.images, seed=args.seed, work=Path(tmp)
        )
        sizes = ", ".join(f"{h.name} {len(h.train_set)}/{len(h.held_out)}" for h in hospitals)
        out.print(
            f"{len(hospitals)} hospitals (train/held-out: {sizes}), {args.rounds} rounds x "
            f"{steps} steps of {args.batch_size}, rule {args.rule}, seed {args.seed}, "
            f"drift control {'on' if args.drift_control else 'off'}",
            highlight=False,
        )
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        task = bar.add_task("training", total=args.rounds * len(hospitals) * steps)

        def on_step(name: str, p: Any) -> None:
            bar.update(task, advance=1, description=f"{name} loss {p.loss:.3f}")

        def on_round(report: RoundReport) -> None:
            losses = ", ".join(f"{n} loss {v:.4f}" for n, v in report.losses.items())
            out.print(
                f"round {report.round}: {losses}; global mAP@0.5 {report.score:.4f}; "
                f"aggregate {report.aggregate_hash[:16]}",
                highlight=False,
            )

        with bar:
            result = simulate(
                hospitals,
                config,
                rounds=args.rounds,
                steps=steps,
                rule=args.rule,
                options=options,
                seed=args.seed,
                lr_schedule=args.lr_schedule,
                server_lr=args.server_lr,
                server_lr_ramp=args.server_lr_ramp,
                keep_optimizer=not args.fresh_optimizer,
                work=work,
                device=args.device,
                on_step=on_step,
                on_round=on_round,
            )
    out.print(f"final aggregate {result.aggregate_hash}", highlight=False)
    out.print(f"final model {result.rounds[-1].model_hash}", highlight=False)
    return result


def _fail(message: str) -> NoReturn:
    print(f"simulate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run_cli(args)
    except (SimulationError, ConfigError, ReaderError, TrainingStopped, UpdateRejected) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except ValueError as exc:  # a rule refusing its settings
        _fail(str(exc).splitlines()[0])
    except KeyboardInterrupt:
        _fail("interrupted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
