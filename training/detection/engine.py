"""The local training loop and evaluation, shaped like torchvision's detection references.

``train`` runs a :class:`TrainingConfig` over a training set and returns the
final weights; it stops with :class:`NonFiniteLoss` (never returning NaN
weights) when a loss or gradient norm is not finite. Every
``checkpoint_every`` steps (and at the last) it writes model, optimizer,
scheduler, RNG states and the position in the data order; started again with the same checkpoint
folder it resumes there, and on the CPU ends with the same weights, bit for
bit, as a run never interrupted (tests/training/detection/test_engine.py
kills one to check). The data order is a permutation seeded by
``(seed, epoch)``, so a position is just a step number.

On CUDA: model and data on the device, bf16 autocast, deterministic
algorithms where torch has them (warn-only: see docs/detection.md). One
process per GPU: a node's worker runs with ``--concurrency 1`` and
``CUDA_VISIBLE_DEVICES`` pinned, so ``cuda`` is always device 0 here.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from training.detection.config import TrainingConfig
from training.detection.models import build_model
from training.detection.reader import DecodedCache, DetectionSet, Instance, Target

CHECKPOINT_FORMAT = "medchain-checkpoint/1"
_CHECKPOINT_GLOB = "checkpoint-*.pt"
StateDict = dict[str, torch.Tensor]


class TrainingStopped(RuntimeError):
    """A run that cannot go on; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonFiniteLoss(TrainingStopped):
    """A loss or gradient norm became NaN or infinite: the run stops, no weights returned."""

    def __init__(self, *, step: int, epoch: int, what: str, components: Mapping[str, float]):
        parts = ", ".join(f"{k}={v:.4g}" for k, v in components.items())
        super().__init__(f"{what} is not finite at step {step} (epoch {epoch}): {parts}")
        self.step = step
        self.epoch = epoch
        self.components = dict(components)


class CheckpointMismatch(TrainingStopped):
    """A checkpoint written by a different config or dataset than the one resuming."""


class TrainingSet(Protocol):
    """What ``train`` reads: a length and a deterministic ``sample(index, epoch)``."""

    def __len__(self) -> int: ...

    def sample(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, Target]: ...


@dataclass(frozen=True)
class Progress:
    step: int  # steps done, counting those before a resume
    total_steps: int
    epoch: int
    loss: float
    components: dict[str, float]
    lr: float
    images_per_s: float  # since this process started training
    eta_s: float


@dataclass(frozen=True)
class TrainResult:
    state: StateDict  # on the CPU
    weights_sha256: str
    steps: int
    resumed_from: int | None  # the checkpoint's step, when the run resumed
    # The optimizer's per-parameter state (AdamW's moments and step counts, SGD's momentum),
    # on the CPU: a node keeps it for its next round (``initial_optimizer_state``); it is
    # never part of an update.
    optimizer_state: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


class _Drift:
    """SCAFFOLD's correction, in the optimizer's step (docs/federated.md, "Drift control").

    ``correction[name]`` (the consortium's mean step direction minus the hospital's own,
    c - c_i, per unit of learning rate) is applied after every ``optimizer.step()``:
    ``param -= lr * correction``, so a hospital whose data pulls it away from the others
    is steered back by the difference, step by step.
    """

    def __init__(self, model: nn.Module, correction: Mapping[str, torch.Tensor]) -> None:
        named = dict(model.named_parameters())
        unknown = sorted(set(correction) - set(named))
        if unknown:
            raise TrainingStopped(f"drift correction names no parameter of the model: {unknown[0]}")
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        digest = hashlib.sha256()
        for name, param in named.items():
            if name not in correction or not param.requires_grad:
                continue
            value = correction[name]
            if value.shape != param.shape or value.dtype != torch.float32:
                raise TrainingStopped(
                    f"drift correction for {name} is {value.dtype} {tuple(value.shape)}, "
                    f"not float32 {tuple(param.shape)}"
                )
            if not torch.isfinite(value).all():
                raise TrainingStopped(f"drift correction for {name} is not finite")
            self.pairs.append((param, value.detach().to(param.device, copy=True)))
            digest.update(name.encode() + b"|")
            digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.sha256 = digest.hexdigest()

    @torch.no_grad()
    def step(self, lr: float) -> None:
        for param, value in self.pairs:
            param.sub_(value * lr)


def total_steps(config: TrainingConfig, samples: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return config.epochs * steps_per_epoch(config, samples)


def steps_per_epoch(config: TrainingConfig, samples: int) -> int:
    return math.ceil(samples / config.batch_size)


def data_order(seed: int, epoch: int, samples: int) -> np.ndarray:
    """The sample indices of ``epoch`` in training order."""
    return np.random.default_rng([seed, epoch, 0x0D47A]).permutation(samples)


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over sorted names, dtypes, shapes and bytes: equal only for bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    config: TrainingConfig,
    train_set: TrainingSet,
    *,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    initial_optimizer_state: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    drift_correction: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train from ``initial_state`` (or the seed's fresh model); resume from a checkpoint.

    ``initial_optimizer_state`` is a previous run's ``TrainResult.optimizer_state``: a
    federated node carries its optimizer's moments from one round to the next, as a
    single run would, instead of starting AdamW again (whose first steps are as large as
    the rate whatever the gradient). Only the per-parameter state is taken; the rate and
    schedule are this config's.

    ``drift_correction`` (by parameter name: SCAFFOLD's c - c_i, per unit of rate,
    training/federated/drift.py) moves every parameter by ``-lr * correction`` after each
    optimizer step. See :class:`_Drift`.

    Seeds torch's, numpy's and Python's global generators from the config (a
    worker runs one task at a time), since some models draw from them (Faster
    R-CNN's sampler).
    """
    dev = torch.device(device) if device is not None else default_device()
    samples = len(train_set)
    if samples == 0:
        raise TrainingStopped("the training split is empty: no instance to train on")
    total = total_steps(config, samples)
    model = build_model(
        config.model,
        num_classes=len(config.classes),
        image_size=config.image_size,
        seed=config.seed,
    )
    if initial_state is not None:
        model.load_state_dict(initial_state)
    model.to(dev)
    optimizer = _optimizer(config, model)
    if initial_optimizer_state:
        _load_optimizer_state(optimizer, initial_optimizer_state)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, total))
    drift = _Drift(model, drift_correction) if drift_correction is not None else None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    checkpoint = _latest_checkpoint(folder) if folder is not None else None
    start = 0
    if checkpoint is not None:
        start = _restore(checkpoint, config, samples, model, optimizer, scheduler, drift)
    else:
        _seed_everything(config.seed)
    with _deterministic(dev):
        _run_steps(
            config, train_set, model, optimizer, scheduler,
            device=dev, start=start, total=total, folder=folder, progress=progress,
            drift=drift,
        )  # fmt: skip
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingStopped(f"the final weights are not finite in {', '.join(bad[:3])}")
    return TrainResult(
        state=state,
        weights_sha256=weights_sha256(state),
        steps=total,
        resumed_from=start if checkpoint is not None else None,
        optimizer_state=_optimizer_state(optimizer),
    )


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, torch.Tensor]]:
    """The per-parameter state by parameter index, copied to the CPU."""
    state = optimizer.state_dict()["state"]
    return {
        int(i): {k: v.detach().to("cpu", copy=True) for k, v in entry.items()}
        for i, entry in state.items()
    }


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    carried: Mapping[int, Mapping[str, torch.Tensor]],
) -> None:
    """Take ``carried`` per-parameter state, keep this optimizer's own param groups (rate,
    weight decay); a state that does not fit the model is refused before any step."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in carried.items():
        if not 0 <= int(index) < len(params):
            raise TrainingStopped(f"optimizer state names parameter {index} of {len(params)}")
        shape = params[int(index)].shape
        for name, value in entry.items():
            if value.dim() and value.shape != shape:
                raise TrainingStopped(
                    f"optimizer state {name} of parameter {index} has shape "
                    f"{tuple(value.shape)}, not {tuple(shape)}"
                )
    own = optimizer.state_dict()
    own["state"] = {
        int(i): {k: v.detach().clone() for k, v in entry.items()} for i, entry in carried.items()
    }
    optimizer.load_state_dict(own)  # moves the moments to the parameters' device


def _run_steps(
    config: TrainingConfig,
    train_set: TrainingSet,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    start: int,
    total: int,
    folder: Path | None,
    progress: Callable[[Progress], None] | None,
    drift: _Drift | None = None,
) -> None:
    """``train_one_epoch`` over global steps ``start`` .. ``total``, across epoch boundaries."""
    samples = len(train_set)
    per_epoch = steps_per_epoch(config, samples)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    began = time.perf_counter()
    images = 0
    order_epoch, order = -1, np.empty(0, dtype=np.int64)
    for step in range(start, total):
        epoch, offset = divmod(step, per_epoch)
        if epoch != order_epoch:
            order_epoch, order = epoch, data_order(config.seed, epoch, samples)
        batch = order[offset * config.batch_size : (offset + 1) * config.batch_size]
        inputs, targets = _batch(train_set, batch, epoch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss_dict = model(inputs, targets)
        loss = sum(loss_dict.values(), torch.zeros((), device=device))
        components = {k: float(v.detach()) for k, v in loss_dict.items()}
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(step=step + 1, epoch=epoch, what="loss", components=components)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip_norm is not None:
            norm = float(nn.utils.clip_grad_norm_(params, config.grad_clip_norm))
            if not math.isfinite(norm):
                what = "gradient norm"
                raise NonFiniteLoss(step=step + 1, epoch=epoch, what=what, components=components)
        optimizer.step()
        if drift is not None:
            drift.step(float(optimizer.param_groups[0]["lr"]))
        scheduler.step()
        done = step + 1
        every = config.checkpoint_every
        if folder is not None and every and (done % every == 0 or done == total):
            _save_checkpoint(folder, config, samples, done, model, optimizer, scheduler, drift)
        images += len(batch)
        if progress is not None:
            elapsed = time.perf_counter() - began
            progress(
                Progress(
                    step=done,
                    total_steps=total,
                    epoch=epoch,
                    loss=loss_value,
                    components=components,
                    lr=float(optimizer.param_groups[0]["lr"]),
                    images_per_s=images / elapsed if elapsed > 0 else 0.0,
                    eta_s=elapsed / (done - start) * (total - done),
                )
            )


def _batch(
    train_set: TrainingSet, indices: Sequence[int] | np.ndarray, epoch: int, device: torch.device
) -> tuple[list[torch.Tensor], list[Target]]:
    inputs: list[torch.Tensor] = []
    targets: list[Target] = []
    for index in indices:
        image, target = train_set.sample(int(index), epoch)
        inputs.append(image.to(device, non_blocking=True))
        targets.append({k: v.to(device, non_blocking=True) for k, v in target.items()})
    return inputs, targets


def _optimizer(config: TrainingConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _lr_factor(config: TrainingConfig, total: int) -> Callable[[int], float]:
    """Linear warm-up from 1/1000 of the rate, then constant or cosine to zero."""
    warmup = min(config.warmup_steps, total)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + 0.999 * step / warmup
        if config.scheduler == "constant":
            return 1.0
        span = max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))

    return factor


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"checkpoint-{step:08d}.pt"


def _save_checkpoint(
    folder: Path,
    config: TrainingConfig,
    samples: int,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    drift: _Drift | None = None,
) -> Path:
    """Write the checkpoint whole (temporary file, then rename) and drop older ones."""
    folder.mkdir(parents=True, exist_ok=True)
    per_epoch = steps_per_epoch(config, samples)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config_sha256": config.sha256,
        "samples": samples,
        "step": step,
        "epoch": step // per_epoch,
        "step_in_epoch": step % per_epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_states(),
        "drift_sha256": drift.sha256 if drift is not None else None,
    }
    path = checkpoint_path(folder, step)
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    for old in folder.glob(_CHECKPOINT_GLOB):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob(_CHECKPOINT_GLOB)) if folder.is_dir() else []
    return found[-1] if found else None


def _restore(
    path: Path,
    config: TrainingConfig,
    samples: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    drift: _Drift | None = None,
) -> int:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path.name} is not a {CHECKPOINT_FORMAT} checkpoint")
    if payload["config_sha256"] != config.sha256:
        raise CheckpointMismatch(
            f"{path.name} was written for config {payload['config_sha256'][:12]}…, "
            f"not this run's {config.sha256[:12]}…; remove it to start over"
        )
    if payload["samples"] != samples:
        raise CheckpointMismatch(
            f"{path.name} was written over {payload['samples']} training images, not {samples}"
        )
    own = drift.sha256 if drift is not None else None
    if payload.get("drift_sha256") != own:
        raise CheckpointMismatch(
            f"{path.name} was written with another drift correction; remove it to start over"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_states(payload["rng"])
    return int(payload["step"])


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run: strict on the CPU, warn-only on CUDA.

    Some CUDA kernels the detectors use have no deterministic version
    (docs/detection.md); warn-only runs them anyway rather than failing the round.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


@dataclass(frozen=True)
class Evaluation:
    score: float
    predictions: list[Target]  # on the CPU, float32 boxes
    targets: list[Target]


Metric = Callable[[Sequence[Target], Sequence[Target]], float]


def map50(predictions: Sequence[Target], targets: Sequence[Target]) -> float:
    """COCO mAP at IoU 0.5 (torchmetrics over pycocotools), the default validation score."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_thresholds=[0.5], backend="pycocotools")
    metric.update(list(predictions), list(targets))
    return float(metric.compute()["map"])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TrainingSet,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    metric: Metric = map50,
) -> Evaluation:
    """Predictions over every sample of ``dataset`` (epoch 0, as given), scored by ``metric``."""
    dev = torch.device(device) if device is not None else default_device()
    model.to(dev).eval()
    predictions: list[Target] = []
    targets: list[Target] = []
    for first in range(0, len(dataset), batch_size):
        indices = range(first, min(first + batch_size, len(dataset)))
        inputs, batch_targets = _batch(dataset, list(indices), 0, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            outputs = model(inputs)
        for out, target in zip(outputs, batch_targets, strict=True):
            predictions.append(
                {k: v.cpu().float() if v.is_floating_point() else v.cpu() for k, v in out.items()}
            )
            targets.append({k: v.cpu() for k, v in target.items()})
    score = metric(predictions, targets) if predictions else float("nan")
    return Evaluation(score=score, predictions=predictions, targets=targets)


def validation_score(
    config: TrainingConfig,
    state: Mapping[str, torch.Tensor],
    validation_set: TrainingSet,
    *,
    device: torch.device | str | None = None,
    metric: Metric = map50,
) -> Evaluation:
    """A node scores weights (a round's aggregate, say) on its own validation split."""
    model = build_model(
        config.model,
        num_classes=len(config.classes),
        image_size=config.image_size,
        seed=config.seed,
    )
    model.load_state_dict(state)
    return evaluate(
        model, validation_set, batch_size=config.batch_size, device=device, metric=metric
    )


__all__ = [
    "CheckpointMismatch",
    "Evaluation",
    "NonFiniteLoss",
    "Progress",
    "TrainResult",
    "TrainingConfig",
    "TrainingSet",
    "TrainingStopped",
    "data_order",
    "evaluate",
    "map50",
    "node_sets",
    "total_steps",
    "train",
    "validation_score",
    "weights_sha256",
]


def node_sets(
    config: TrainingConfig, instances: Sequence[Instance], *, cache: DecodedCache | None = None
) -> tuple[DetectionSet, DetectionSet]:
    """(train, validation) over a node's instances, shaped by the config."""
    full = DetectionSet(
        instances,
        classes=config.classes,
        window=config.window,
        image_size=config.image_size,
        augmentation=config.augmentation,
        seed=config.seed,
        cache=cache,
    )
    return full.split(seed=config.seed, validation_fraction=config.validation_fraction)
