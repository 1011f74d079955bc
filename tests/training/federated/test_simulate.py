"""The federation simulator: a tiny run end to end, its determinism, and its one-line errors."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from training.detection.config import TrainingConfig
from training.detection.engine import train
from training.detection.models import build_model
from training.federated import drift
from training.federated.server import server_step
from training.federated.simulate import (
    Hospital,
    RoundView,
    SimulationError,
    SimulationResult,
    local_seed,
    main,
    make_hospitals,
    round_lr,
    simulate,
)
from training.federated.updates import Layout, apply_delta, make_update, state_hash, write_update
from training.ingest.phantoms import PROFILES

ROOT = Path(__file__).resolve().parents[3]
TINY = [
    "--hospitals", "2", "--rounds", "2", "--images", "10", "--image-size", "64",
    "--batch-size", "2", "--steps", "2", "--threads", "1",
]  # fmt: skip


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main([*TINY, *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_tiny_run_prints_each_round_and_is_deterministic(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(capsys, "--work", str(tmp_path / "first"))
    assert code == 0, out
    rounds = re.findall(
        r"^round (\d): hospital-a loss (\S+), hospital-b loss (\S+); "
        r"global mAP@0\.5 (\S+); aggregate [0-9a-f]{16}$",
        out,
        re.M,
    )
    assert [r[0] for r in rounds] == ["1", "2"]
    for _, loss_a, loss_b, score in rounds:
        assert float(loss_a) > 0 and float(loss_b) > 0
        assert 0.0 <= float(score) <= 1.0
    first = re.search(r"^final aggregate ([0-9a-f]{64})$", out, re.M)
    assert first is not None
    # Each round left its checked updates and the aggregate, as nodes would exchange them.
    assert {p.name for p in (tmp_path / "first" / "round-002").iterdir()} == {
        "hospital-a.safetensors",
        "hospital-b.safetensors",
        "aggregate.safetensors",
    }

    code, again, _ = _run(capsys, "--work", str(tmp_path / "second"))
    assert code == 0
    assert f"final aggregate {first.group(1)}" in again.splitlines()

    code, other, _ = _run(capsys, "--seed", "1")
    assert code == 0
    assert first.group(1) not in other  # the seed matters: the hash is not a constant


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hospitals", "9"], "--hospitals must be between 1 and"),
        (["--hospitals", "0"], "--hospitals must be between 1 and"),
        (["--rule", "krum", "--f", "1"], "krum with f=1 needs more than 4 hospitals"),
        (["--rule", "dp_fedavg"], "dp_fedavg needs --clip-norm"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--profiles", "hospital-a,nowhere"], "unknown profile(s) nowhere"),
        (["--hospitals", "two"], "invalid int value"),
        (["--server-lr", "0"], "--server-lr must be a positive number"),
        (["--server-lr-ramp", "-1"], "--server-lr-ramp must be 0 or more"),
    ],
)
def test_bad_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and out == ""


def test_bad_rule_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "training.federated.simulate", *TINY, "--rule", "mean"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "simulate: error: unknown rule 'mean': one of dp_fedavg, fedavg, krum, median, trimmed_mean"
    ]
    assert done.stdout == ""


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingConfig, list[Hospital]]:
    config = TrainingConfig(image_size=64, batch_size=2, validation_fraction=0.25, seed=3)
    work = tmp_path_factory.mktemp("phantoms")
    profiles = [PROFILES["hospital-a"], PROFILES["hospital-b"]]
    return config, make_hospitals(profiles, config, images=10, seed=3, work=work)


def _simulate(
    setup: tuple[TrainingConfig, list[Hospital]], work: Path, **kwargs: Any
) -> SimulationResult:
    config, hospitals = setup
    return simulate(
        hospitals, config, rounds=2, steps=2, rule="fedavg", work=work, device="cpu", **kwargs
    )


def test_each_hospital_keeps_its_optimizer_state_between_rounds_outside_its_update(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    kept = _simulate(hospitals, tmp_path / "kept")
    fresh = _simulate(hospitals, tmp_path / "fresh", keep_optimizer=False)
    # Round 1 starts from no state either way; round 2's local runs differ by SGD's momentum.
    assert kept.rounds[0].aggregate_hash == fresh.rounds[0].aggregate_hash
    assert kept.rounds[1].aggregate_hash != fresh.rounds[1].aggregate_hash
    config, _ = hospitals
    model = build_model(config.model, num_classes=1, image_size=64, seed=config.seed)
    expected = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    for path in (tmp_path / "kept" / "round-002").glob("hospital-*.safetensors"):
        assert set(load_file(path)) == expected  # model entries only: no moment ever travels


def test_the_server_rate_scales_the_applied_aggregate_not_the_aggregate(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    plain = _simulate(hospitals, tmp_path / "plain")
    scaled = _simulate(hospitals, tmp_path / "scaled", server_lr=2.0)
    assert scaled.rounds[0].aggregate_hash == plain.rounds[0].aggregate_hash
    assert scaled.rounds[0].model_hash != plain.rounds[0].model_hash
    config, _ = hospitals
    model = build_model(config.model, num_classes=1, image_size=64, seed=config.seed)
    base = dict(model.state_dict())
    layout = Layout.of(base)
    delta = load_file(tmp_path / "scaled" / "round-001" / "aggregate.safetensors")
    parameters = {name for name, _ in model.named_parameters()}
    expected = server_step(base, delta, layout, server_lr=2.0, parameters=parameters)
    assert state_hash(expected) == scaled.rounds[0].model_hash
    with pytest.raises(SimulationError, match="server learning rate must be a positive number"):
        _simulate(hospitals, tmp_path / "zero", server_lr=0.0)


def test_a_ramped_server_rate_applies_one_in_the_first_round_and_the_rate_after(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    plain = _simulate(hospitals, tmp_path / "plain")
    ramped = _simulate(hospitals, tmp_path / "ramped", server_lr=2.0, server_lr_ramp=1)
    assert ramped.rounds[0].model_hash == plain.rounds[0].model_hash  # round 1 at rate 1
    config, _ = hospitals
    model = build_model(config.model, num_classes=1, image_size=64, seed=config.seed)
    parameters = {name for name, _ in model.named_parameters()}
    base = dict(model.state_dict())
    layout = Layout.of(base)
    ramped_dir = tmp_path / "ramped"
    first = apply_delta(base, load_file(ramped_dir / "round-001" / "aggregate.safetensors"), layout)
    second = load_file(ramped_dir / "round-002" / "aggregate.safetensors")
    expected = server_step(first, second, layout, server_lr=2.0, parameters=parameters)
    assert state_hash(expected) == ramped.rounds[1].model_hash


def test_augmenting_by_round_changes_later_rounds_only(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    _, (first, _) = hospitals
    view = RoundView(first.train_set, 5)
    image, _ = view.sample(0, 1)
    assert torch.equal(image, first.train_set.sample(0, 6)[0])  # epoch e reads e + offset
    plain = _simulate(hospitals, tmp_path / "plain")
    varied = _simulate(hospitals, tmp_path / "varied", augment_by_round=True)
    assert varied.rounds[0].aggregate_hash == plain.rounds[0].aggregate_hash  # offset 0
    assert varied.rounds[1].aggregate_hash != plain.rounds[1].aggregate_hash


def test_drift_control_steers_round_two_by_variates_read_off_round_ones_files(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    config, sites = hospitals
    plain = _simulate(hospitals, tmp_path / "plain")
    steering = dataclasses.replace(config, drift_control=True)
    result = _simulate((steering, sites), tmp_path / "drift")
    # Round 1 has no variate yet: plain FedAvg's round, bit for bit; round 2 is steered.
    assert result.rounds[0].aggregate_hash == plain.rounds[0].aggregate_hash
    assert result.rounds[1].aggregate_hash != plain.rounds[1].aggregate_hash
    model = build_model(config.model, num_classes=1, image_size=64, seed=config.seed)
    floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    for path in (tmp_path / "drift" / "round-002").glob("hospital-*.safetensors"):
        assert set(load_file(path)) == floating  # nothing new travels

    # Hospital a's round 2 again by hand, from round 1's files alone: c off the
    # aggregate, c_i off its own update, each over 2 steps at round 1's rate.
    first, hospital = tmp_path / "drift" / "round-001", sites[0]
    parameters = sorted(name for name, _ in model.named_parameters())
    rates = [round_lr(config.lr, r, 2, "cosine") for r in (0, 1)]
    consortium = drift.direction(
        load_file(first / "aggregate.safetensors"), parameters, steps=2, lr=rates[0]
    )
    own = drift.direction(
        load_file(first / f"{hospital.name}.safetensors"), parameters, steps=2, lr=rates[0]
    )

    def local(r: int) -> TrainingConfig:
        return dataclasses.replace(
            steering, seed=local_seed(0, r, 0), max_steps=2, lr=rates[r], scheduler="constant",
            warmup_steps=config.warmup_steps if r == 0 else 0, checkpoint_every=0,
        )  # fmt: skip

    base = dict(model.state_dict())
    one = train(local(0), hospital.train_set, initial_state=base, device="cpu")
    layout = Layout.of(base)
    global_one = apply_delta(base, load_file(first / "aggregate.safetensors"), layout)
    two = train(
        local(1), hospital.train_set, initial_state=global_one,
        initial_optimizer_state=one.optimizer_state,
        drift_correction=drift.correction(consortium, own), device="cpu",
    )  # fmt: skip
    update = make_update(global_one, two.state, layout)
    written = write_update(update, layout, tmp_path / "by-hand.safetensors")
    second = (tmp_path / "drift" / "round-002" / f"{hospital.name}.safetensors").read_bytes()
    assert written == hashlib.sha256(second).hexdigest()


def test_drift_control_runs_under_every_rule(
    hospitals: tuple[TrainingConfig, list[Hospital]], tmp_path: Path
) -> None:
    config, sites = hospitals
    steering = dataclasses.replace(config, drift_control=True)
    options = {"clip_norm": 1.0, "noise_multiplier": 0.5}
    result = simulate(
        sites, steering, rounds=2, steps=1, rule="dp_fedavg", options=options, work=tmp_path,
        device="cpu",
    )  # fmt: skip
    assert len(result.rounds) == 2 and 0.0 <= result.rounds[1].score <= 1.0


def test_drift_control_from_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(capsys, "--drift-control", "--work", str(tmp_path))
    assert code == 0 and re.search(r"^round 2: .*global mAP@0\.5 \S+", out, re.M), out
    assert re.search(r"drift control on", out), out
