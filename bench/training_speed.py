"""Training images/s of the engine against a bare torchvision loop, in the same run.

Phantom CT slices are packaged, read back through ``training.detection.reader``
and decoded into its cache once; then, alternating for a few rounds:

- the engine: ``training.detection.engine.train`` with a config as a node runs
  it (seeded data order, flips, gradient clipping, the non-finite guard, a
  progress callback every step, deterministic kernels; no checkpoints);
- the baseline: the bare loop of torchvision's references over the same cached
  tensors, already batched: forward, sum of the losses, backward, step.

Both are timed from the end of their first step to the end of their last (the
first pays for allocations), and the best round of each counts. Target (issue
11): engine >= 0.9x the baseline. ``--model fasterrcnn_resnet50_fpn_v2`` runs
the large model the same way (meant for a GPU node; on a CPU, keep ``--steps``
small). Runs on CUDA with bf16 autocast when a GPU is present, else the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.detection.config import TrainingConfig  # noqa: E402
from training.detection.engine import data_order, default_device, train  # noqa: E402
from training.detection.models import MODELS, build_model  # noqa: E402
from training.detection.reader import DetectionSet, MemoryCache, read_package  # noqa: E402
from training.ingest.dataset import package_dataset  # noqa: E402
from training.ingest.phantoms import write_ct_dataset  # noqa: E402

RATIO_TARGET = 0.9
DATASET_ID = "00000000-0000-4000-8000-00000000b7a1"
KEY = bytes(32)


def prepare(*, images: int, image_size: int, work: Path) -> list[Any]:
    """Phantoms written, packaged, read back: the node's instances."""
    annotations = write_ct_dataset(
        work / "dicom", profile="hospital-b", count=images, seed=5, rows=image_size, cols=image_size
    )
    result = package_dataset(
        work / "dicom", annotations, work / "pkg", dataset_id=DATASET_ID, uid_secret=b"bench",
        data_key=KEY,
    )  # fmt: skip
    return read_package(work / "pkg", data_key=KEY, dataset_id=DATASET_ID, manifest=result.manifest)


def _stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _throughput(stamps: list[tuple[float, float]], batch_size: int) -> tuple[float, float]:
    """Images per wall second and per CPU second, from the end of the first step to the last."""
    images = (len(stamps) - 1) * batch_size
    return (
        images / (stamps[-1][0] - stamps[0][0]),
        images / (stamps[-1][1] - stamps[0][1]),
    )


def _engine(
    config: TrainingConfig, dataset: DetectionSet, device: torch.device
) -> tuple[float, float]:
    stamps: list[tuple[float, float]] = []
    train(config, dataset, device=device, progress=lambda p: stamps.append(_stamp()))
    return _throughput(stamps, config.batch_size)


def _bare(
    config: TrainingConfig, dataset: DetectionSet, device: torch.device
) -> tuple[float, float]:
    """torchvision's reference loop, nothing else: the tensors are batched before timing."""
    plain = dataset.evaluation_view()
    order = data_order(config.seed, 0, len(plain)).tolist()
    steps = config.max_steps or 1
    batches = []
    for step in range(steps):
        first = step * config.batch_size % len(order)
        picks = [order[(first + k) % len(order)] for k in range(config.batch_size)]
        samples = [plain.sample(i) for i in picks]
        images = [image.to(device) for image, _ in samples]
        targets = [{k: v.to(device) for k, v in t.items()} for _, t in samples]
        batches.append((images, targets))
    model = build_model(
        config.model, num_classes=1, image_size=config.image_size, seed=config.seed
    ).to(device)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    stamps: list[tuple[float, float]] = []
    for images, targets in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss_dict = model(images, targets)
        losses = sum(loss_dict.values())
        optimizer.zero_grad()
        losses.backward()  # type: ignore[union-attr]
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(_stamp())
    return _throughput(stamps, config.batch_size)


def run(
    *,
    model: str = "fcos_tiny",
    steps: int = 20,
    rounds: int = 3,
    batch_size: int = 8,
    image_size: int | None = None,
    images: int = 32,
) -> dict[str, dict[str, Any]]:
    """Time engine and bare loop; return the bench.json entry for ``model``."""
    size = image_size or MODELS[model].image_size
    device = default_device()
    config = TrainingConfig(
        model=model, image_size=size, batch_size=batch_size, max_steps=steps, lr=0.005
    )
    with tempfile.TemporaryDirectory(prefix="medchain-bench-training-") as tmp:
        instances = prepare(images=images, image_size=size, work=Path(tmp))
    dataset = DetectionSet(
        instances,
        classes=config.classes,
        window=config.window,
        image_size=size,
        augmentation=config.augmentation,
        seed=config.seed,
        cache=MemoryCache(),
    )
    for index in range(len(dataset)):
        dataset.sample(index)  # decode into the cache: neither loop decodes DICOM
    engine_runs: list[tuple[float, float]] = []
    bare_runs: list[tuple[float, float]] = []
    for _ in range(rounds):  # alternated, so a busy spell of the machine hits both
        bare_runs.append(_bare(config, dataset, device))
        engine_runs.append(_engine(config, dataset, device))
    engine, bare = max(r[0] for r in engine_runs), max(r[0] for r in bare_runs)
    engine_cpu, bare_cpu = max(r[1] for r in engine_runs), max(r[1] for r in bare_runs)
    print(
        f"training bench ({model}, {size}x{size}, batch {batch_size}, {steps} steps, "
        f"{device.type}, {torch.get_num_threads()} threads): engine {engine:.2f} img/s "
        f"(runs: {_runs(engine_runs)}), bare loop {bare:.2f} img/s (runs: {_runs(bare_runs)}) "
        f"= {engine / bare:.3f} x (target >= {RATIO_TARGET}); per CPU second "
        f"{engine_cpu:.2f} vs {bare_cpu:.2f} = {engine_cpu / bare_cpu:.3f} x",
        flush=True,
    )
    name = "training_images_per_s" if model == "fcos_tiny" else f"training_images_per_s_{model}"
    return {
        name: {
            "value": round(engine, 2),
            "baseline": round(bare, 2),
            "ratio": round(engine / bare, 4),
            "unit": "images/s",
        }
    }


def _runs(runs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{wall:.2f}" for wall, _ in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="fcos_tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="6 steps, 1 round, 16 images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.rounds = 6, 1
    figures = run(
        model=args.model,
        steps=args.steps,
        rounds=args.rounds,
        batch_size=args.batch_size,
        image_size=args.image_size,
        images=16 if args.quick else 32,
    )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
