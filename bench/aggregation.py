"""Aggregating 10 updates of the small and the large detector: time against one memory copy
of the same bytes, and peak memory against the model's size.

For each model (``fcos_tiny``, ~0.6 M entries; ``fasterrcnn_resnet50_fpn_v2``, ~43 M) ten
random float32 updates are written in the update format under var/bench-aggregation and
checked once (which also leaves them in the page cache). Then, each in a fresh process:

- the floor: ``numpy.copyto`` of each of ten model-sized rows of one in-memory array into
  a model-sized buffer, i.e. one memory copy of the bytes the ten updates hold; beside it,
  taking the ten files' bytes from the page cache chunk by chunk as FedAvg does (each
  chunk of each file read with ``preadv`` into one reused buffer; reported as
  ``aggregation_read_*``, so the part of a rule's time that is I/O shows);
- each rule (FedAvg, coordinate median, trimmed mean, Krum, Multi-Krum, DP-FedAvg) on the
  ten checked updates with its default workers (one thread per CPU this process may use,
  printed), the fastest of three runs (one for the large model's rules other than
  FedAvg); FedAvg once more on one worker, since the floor is one thread's copy; the peak
  RSS while it runs (Linux's VmHWM, reset through /proc/self/clear_refs) above the RSS
  once the updates are checked is its working memory, compared with the model's float32
  size (the aggregate itself is one model's worth).

Each time is also taken as the process's CPU time (all its threads), against the copy's:
on a shared machine the wall-clock ratio moves with what else runs, the CPU ratio less so.

The floor copies every byte the rule reads (ten updates), once. Target (issue 11): FedAvg
within 2x the floor; robust rules are reported. ``quick`` runs the small model only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / "var" / "bench-aggregation"
UPDATES = 10
REPEATS = 3
FEDAVG_TARGET = 2.0
MODELS = {"small": "fcos_tiny", "large": "fasterrcnn_resnet50_fpn_v2"}
RULES: dict[str, dict[str, Any]] = {
    "fedavg": {"rule": "fedavg", "sample_cap": 5000},
    "fedavg_one_worker": {"rule": "fedavg", "sample_cap": 5000, "workers": 1},
    "median": {"rule": "median"},
    "trimmed_mean": {"rule": "trimmed_mean", "beta": 0.2},
    "krum": {"rule": "krum", "f": 2},
    "multi_krum": {"rule": "krum", "f": 2, "keep": 6},
    "dp_fedavg": {
        "rule": "dp_fedavg",
        "clip_norm": 1.0,
        "noise_multiplier": 1.0,
        "round_id": 1,
        "noise_seed": "00" * 32,
    },
}


def run(*, quick: bool = False, work_dir: Path = WORK_DIR) -> dict[str, dict[str, Any]]:
    """Prepare the updates, time the floors and every rule, return the bench.json entries."""
    figures: dict[str, dict[str, Any]] = {}
    for size in ["small"] if quick else ["small", "large"]:
        directory = work_dir / size
        _child({"mode": "prepare", "model": MODELS[size], "dir": str(directory)})
        floors = _child({"mode": "floor", "dir": str(directory)})
        copy, read, model_mb = floors["copy_ms"], floors["read_ms"], floors["model_mb"]
        copy_cpu = floors["copy_cpu_ms"]
        line = [
            f"{size} ({MODELS[size]}, {model_mb:,.1f} MB, {floors['workers']} workers): "
            f"memory copy {copy:,.1f} ms ({copy_cpu:,.1f} ms CPU), "
            f"reading the files {read:,.1f} ms"
        ]
        # The large model's robust rules take seconds each: one run of them is enough.
        repeats = REPEATS if size == "small" else 1
        for name, settings in RULES.items():
            spec = {"mode": "rule", "dir": str(directory), "settings": settings}
            r = _child({**spec, "repeats": REPEATS if name.startswith("fedavg") else repeats})
            figures[f"aggregation_{name}_{size}_ms"] = _entry(r["ms"], copy, "ms")
            figures[f"aggregation_{name}_{size}_cpu_ms"] = _entry(r["cpu_ms"], copy_cpu, "ms")
            figures[f"aggregation_{name}_{size}_peak_mb"] = _entry(r["peak_mb"], model_mb, "MB")
            line.append(
                f"{name} {r['ms']:,.1f} ms = {r['ms'] / copy:.2f} x copy "
                f"({r['ms'] / read:.2f} x read; CPU {r['cpu_ms'] / copy_cpu:.2f} x copy's), "
                f"+{r['peak_mb']:,.1f} MB = {r['peak_mb'] / model_mb:.2f} x model"
            )
        figures[f"aggregation_read_{size}_ms"] = _entry(read, copy, "ms")
        print(f"aggregation bench, {UPDATES} updates: " + "; ".join(line))
    return figures


def _entry(value: float, baseline: float, unit: str) -> dict[str, Any]:
    return {
        "value": round(value, 2),
        "baseline": round(baseline, 2),
        "ratio": round(value / baseline, 4),
        "unit": unit,
    }


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"aggregation bench step {spec['mode']} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _prepare(model_name: str, directory: Path) -> dict[str, Any]:
    import numpy as np
    from safetensors.torch import save_file

    from training.detection.models import build_model
    from training.federated.updates import Layout, delta_from_flat, write_update

    if (directory / "done.json").exists():
        return json.loads((directory / "done.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    base = build_model(model_name, num_classes=1, seed=0).state_dict()
    save_file(dict(base), directory / "base.safetensors")
    layout = Layout.of(base)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(UPDATES):
        flat = (rng.standard_normal(layout.numel, dtype=np.float32) * 1e-3).astype(np.float32)
        write_update(delta_from_flat(flat, layout), layout, directory / f"update-{i}.safetensors")
        samples.append(int(rng.integers(100, 10_000)))
    done = {"model": model_name, "samples": samples}
    (directory / "done.json").write_text(json.dumps(done))
    return done


def _load(directory: Path) -> list[Any]:
    from safetensors.torch import load_file

    from training.federated.updates import Layout, load_update

    done = json.loads((directory / "done.json").read_text())
    layout = Layout.of(load_file(directory / "base.safetensors"))
    return [
        load_update(directory / f"update-{i}.safetensors", layout, samples=n)
        for i, n in enumerate(done["samples"])
    ]


def _rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e3  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _floor(directory: Path) -> dict[str, Any]:
    """Milliseconds (and CPU milliseconds) to copy the bytes of every update once through
    memory (not cache), and to take them from the (cached) files as aggregation does, in
    chunks, on one thread."""
    import numpy as np

    from training.federated.aggregate import DEFAULT_CHUNK, default_workers
    from training.federated.streaming import Scan

    updates = _load(directory)
    layout = updates[0].layout
    src = np.ones((len(updates), layout.numel), dtype=np.float32)
    dst = np.zeros(layout.numel, dtype=np.float32)

    def take(span: Any, values: Any, scratch: Any) -> None:
        pass  # the scan has read the chunk of every update into its buffer

    copy = copy_cpu = read = float("inf")
    for _ in range(REPEATS):
        start, cpu = time.perf_counter(), time.process_time()
        for row in src:
            np.copyto(dst, row)
        copy = min(copy, time.perf_counter() - start)
        copy_cpu = min(copy_cpu, time.process_time() - cpu)
        start = time.perf_counter()
        Scan(updates, DEFAULT_CHUNK, 1, block=True).run(take)
        read = min(read, time.perf_counter() - start)
    return {
        "copy_ms": copy * 1e3,
        "copy_cpu_ms": copy_cpu * 1e3,
        "read_ms": read * 1e3,
        "model_mb": layout.nbytes / 1e6,
        "workers": default_workers(),
    }


def _rule(directory: Path, settings: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Fastest of ``repeats`` runs (wall clock, and CPU time apart), and the peak RSS above
    the RSS once the updates are checked, in a process that ran nothing else."""
    from training.federated.aggregate import aggregate

    settings = dict(settings)
    if "noise_seed" in settings:
        settings["noise_seed"] = bytes.fromhex(settings["noise_seed"])
    from training.federated.kernels import warm

    updates = _load(directory)
    warm()  # numba and FedAvg's compiled loop belong to the process, not to a rule's memory
    before = _rss_mb()
    _reset_peak()
    best = best_cpu = float("inf")
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = aggregate(updates, **settings)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        del result
    return {"ms": best * 1e3, "cpu_ms": best_cpu * 1e3, "peak_mb": _rss_mb("VmHWM") - before}


def _child_main(spec: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)  # no rule uses torch's threads; keep the shared machine calm
    directory = Path(spec["dir"])
    if spec["mode"] == "prepare":
        result = _prepare(spec["model"], directory)
    elif spec["mode"] == "floor":
        result = _floor(directory)
    else:
        result = _rule(directory, spec["settings"], spec["repeats"])
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the small model only")
    args = parser.parse_args()
    if args.child:
        _child_main(json.loads(args.child))
    else:
        print(json.dumps(run(quick=args.quick), indent=2))
