"""The training loop: config, non-finite stops, progress, checkpoints and bit-exact resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.detection.config import ConfigError, TrainingConfig
from training.detection.engine import (
    CheckpointMismatch,
    NonFiniteLoss,
    Progress,
    TrainingStopped,
    data_order,
    evaluate,
    node_sets,
    train,
    validation_score,
    weights_sha256,
)
from training.detection.models import build_model
from training.detection.reader import Augmentation, DetectionSet, Instance, Window, read_instances
from training.ingest.phantoms import write_ct_dataset

ROOT = Path(__file__).resolve().parents[3]
CONFIG = TrainingConfig(
    image_size=96,
    batch_size=4,
    epochs=3,  # 10 training images: 3 steps an epoch, 9 in all
    lr=0.01,
    warmup_steps=2,
    augmentation=Augmentation(hflip=0.5, vflip=0.5, max_shift=4),
    checkpoint_every=2,
    seed=11,
    validation_fraction=0.2,
)

# A training process as a node runs it: the config as JSON, the data from files.
TRAIN_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from training.detection.config import TrainingConfig
from training.detection.engine import node_sets, train
from training.detection.reader import read_instances
data, checkpoints, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
config = TrainingConfig.from_dict(json.loads(sys.argv[4]))
paths = sorted(data.glob("*.dcm"))
train_set, _ = node_sets(config, read_instances(paths, (data / "annotations.json").read_bytes()))
def progress(p):
    print(p.step, flush=True)
    if p.step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(config, train_set, checkpoint_dir=checkpoints, progress=progress)
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the same in the killed subprocess: sums must not regroup


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantoms")
    write_ct_dataset(folder, profile="hospital-b", count=12, seed=2, rows=96, cols=96)
    return folder


def _instances(folder: Path) -> list[Instance]:
    paths = sorted(folder.glob("*.dcm"))
    return read_instances(paths, (folder / "annotations.json").read_bytes())


def _train_set(folder: Path, config: TrainingConfig = CONFIG) -> DetectionSet:
    train_set, _ = node_sets(config, _instances(folder))
    return train_set


class _InfiniteImage:
    """A training set whose one image holds an infinity (a corrupt decode, say)."""

    def __len__(self) -> int:
        return 2

    def sample(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = torch.full((1, 64, 64), 0.5)
        image[0, 10, 10] = math.inf
        boxes = torch.tensor([[20.0, 20.0, 40.0, 36.0]])
        return image, {"boxes": boxes, "labels": torch.tensor([1])}


def test_its_config_round_trips_through_json_and_hashes_canonically() -> None:
    data = json.loads(json.dumps(CONFIG.to_dict()))
    again = TrainingConfig.from_dict(data)
    assert again == CONFIG and again.sha256 == CONFIG.sha256
    assert TrainingConfig.from_dict({**data, "seed": 12}).sha256 != CONFIG.sha256
    assert data["fedbn"] is False and data["window"] == {"center": 40.0, "width": 400.0}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model": "yolo"}, "model must be one of"),
        ({"optimiser": "sgd"}, "unknown config field"),
        ({"lr": 0}, "lr must be positive"),
        ({"image_size": 100}, "multiple of 32"),
        ({"window": {"center": 40, "width": -1}}, "width must be positive"),
        ({"augmentation": {"hflip": 2}}, "hflip must be a probability"),
        ({"scheduler": "plateau"}, "scheduler must be one of"),
    ],
)
def test_its_config_refuses_what_cannot_train(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainingConfig.from_dict({**CONFIG.to_dict(), **change})


def test_it_orders_data_by_a_seeded_permutation_per_epoch() -> None:
    assert data_order(1, 0, 50).tolist() == data_order(1, 0, 50).tolist()
    assert sorted(data_order(1, 0, 50).tolist()) == list(range(50))
    assert data_order(1, 0, 50).tolist() != data_order(1, 1, 50).tolist()


def test_it_reports_progress_every_step(data: Path) -> None:
    seen: list[Progress] = []
    config = TrainingConfig.from_dict({**CONFIG.to_dict(), "epochs": 2, "checkpoint_every": 0})
    result = train(config, _train_set(data, config), progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 7)) and result.steps == 6
    assert {p.total_steps for p in seen} == {6}
    assert [p.epoch for p in seen] == [0, 0, 0, 1, 1, 1]
    for p in seen:
        assert set(p.components) == {"classification", "bbox_regression", "bbox_ctrness"}
        assert p.loss == pytest.approx(sum(p.components.values()), rel=1e-5)
        assert p.images_per_s > 0 and math.isfinite(p.loss)
    assert seen[-1].eta_s == 0 and seen[0].eta_s > 0
    assert seen[0].lr == pytest.approx(0.01 * (0.001 + 0.999 / 2))  # warm-up's second step
    assert seen[-1].lr == pytest.approx(0.0, abs=1e-12)  # cosine to zero
    assert result.weights_sha256 == weights_sha256(result.state)


def test_it_stops_with_a_reason_on_an_infinite_input() -> None:
    config = TrainingConfig(image_size=64, batch_size=2, epochs=1)
    with pytest.raises(NonFiniteLoss, match=r"loss is not finite at step 1 \(epoch 0\)") as err:
        train(config, _InfiniteImage())
    assert err.value.step == 1 and set(err.value.components) >= {"classification"}
    assert "not finite" in err.value.reason


def test_it_stops_with_a_reason_when_a_huge_rate_diverges(data: Path) -> None:
    config = TrainingConfig.from_dict(
        {**CONFIG.to_dict(), "lr": 1e9, "warmup_steps": 0, "checkpoint_every": 0}
    )
    with pytest.raises(NonFiniteLoss, match="is not finite at step") as err:
        train(config, _train_set(data, config))
    assert 1 < err.value.step <= 9


def _run_killed(data: Path, checkpoints: Path, kill_at: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(data), str(checkpoints), str(kill_at), json.dumps(CONFIG.to_dict())]
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    return [int(line) for line in result.stdout.split()]


def test_it_resumes_a_killed_run_to_bit_identical_weights(data: Path, tmp_path: Path) -> None:
    uninterrupted = train(CONFIG, _train_set(data))
    assert uninterrupted.resumed_from is None and uninterrupted.steps == 9

    steps = _run_killed(data, tmp_path / "checkpoints", kill_at=5)
    assert steps == [1, 2, 3, 4, 5]  # killed after step 5, mid-epoch 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint-00000004.pt"]

    resumed_steps: list[int] = []
    resumed = train(
        CONFIG,
        _train_set(data),  # a fresh process's reader: nothing carried over but the folder
        checkpoint_dir=tmp_path / "checkpoints",
        progress=lambda p: resumed_steps.append(p.step),
    )
    assert resumed.resumed_from == 4 and resumed_steps == [5, 6, 7, 8, 9]
    assert resumed.weights_sha256 == uninterrupted.weights_sha256
    # A finished run leaves its last step's checkpoint: running the task again changes nothing.
    again = train(CONFIG, _train_set(data), checkpoint_dir=tmp_path / "checkpoints")
    assert again.resumed_from == 9 and again.weights_sha256 == uninterrupted.weights_sha256
    other_seed = TrainingConfig.from_dict({**CONFIG.to_dict(), "seed": 12})
    assert train(other_seed, _train_set(data)).weights_sha256 != uninterrupted.weights_sha256


def test_it_refuses_to_resume_a_checkpoint_of_another_config(data: Path, tmp_path: Path) -> None:
    short = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 2})
    train(short, _train_set(data, short), checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint-00000002.pt").exists()
    with pytest.raises(CheckpointMismatch, match="written for config"):
        train(CONFIG, _train_set(data), checkpoint_dir=tmp_path)


def test_it_leaves_the_global_determinism_setting_as_it_was(data: Path) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    short = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 1})
    train(short, _train_set(data, short))
    assert torch.are_deterministic_algorithms_enabled() == before


def test_it_scores_weights_on_the_validation_split(data: Path) -> None:
    short = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 2})
    _, validation = node_sets(short, _instances(data))
    state = build_model("fcos_tiny", num_classes=1, image_size=96, seed=0).state_dict()
    evaluation = validation_score(short, state, validation)
    assert len(evaluation.predictions) == len(evaluation.targets) == len(validation) > 0
    assert 0.0 <= evaluation.score <= 1.0
    assert all(set(p) == {"boxes", "scores", "labels"} for p in evaluation.predictions)

    model = build_model("fcos_tiny", num_classes=1, image_size=96, seed=0)
    counted = evaluate(model, validation, metric=lambda preds, targets: float(len(targets)))
    assert counted.score == len(validation)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_it_trains_on_cuda_with_bf16_autocast(data: Path) -> None:
    short = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 3})
    result = train(short, _train_set(data, short), device="cuda")
    assert all(v.device.type == "cpu" for v in result.state.values())
    assert len(result.weights_sha256) == 64


def test_it_keeps_a_set_and_its_config_window_together(data: Path) -> None:
    config = TrainingConfig.from_dict({**CONFIG.to_dict(), "window": {"center": 0, "width": 100}})
    train_set, _ = node_sets(config, _instances(data))
    assert train_set._decoder.window == Window(0.0, 100.0)


def test_it_refuses_an_empty_training_split() -> None:
    empty = DetectionSet([], image_size=64)
    with pytest.raises(TrainingStopped, match="training split is empty"):
        train(TrainingConfig(image_size=64), empty)


class _OneImage:
    """One fixed sample whatever the step, so a run's data order cannot differ from another's."""

    def __init__(self, data: Path) -> None:
        self.image, self.target = _train_set(data).sample(0)

    def __len__(self) -> int:
        return 1

    def sample(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.image, self.target


def test_it_carries_optimizer_state_from_one_run_to_the_next(data: Path) -> None:
    adamw = {"optimizer": "adamw", "lr": 1e-3, "scheduler": "constant", "warmup_steps": 0}
    config = TrainingConfig.from_dict(
        {**CONFIG.to_dict(), **adamw, "batch_size": 1, "checkpoint_every": 0, "augmentation": {}}
    )
    one = _OneImage(data)
    six = train(TrainingConfig.from_dict({**config.to_dict(), "max_steps": 6}), one)
    half = TrainingConfig.from_dict({**config.to_dict(), "max_steps": 3})
    first = train(half, one)
    assert first.optimizer_state and all(
        set(entry) == {"step", "exp_avg", "exp_avg_sq"} for entry in first.optimizer_state.values()
    )
    carried = train(
        half, one, initial_state=first.state, initial_optimizer_state=first.optimizer_state
    )
    afresh = train(half, one, initial_state=first.state)
    # Carried over, two runs of 3 steps are one of 6, bit for bit; started again, AdamW is not.
    assert carried.weights_sha256 == six.weights_sha256
    assert afresh.weights_sha256 != six.weights_sha256
    assert float(carried.optimizer_state[0]["step"]) == 6
    # The caller's copy is left as it was: a node may hand the same state to a retry.
    assert float(first.optimizer_state[0]["step"]) == 3


def test_it_refuses_an_optimizer_state_of_another_model(data: Path) -> None:
    config = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 1, "checkpoint_every": 0})
    wrong = {0: {"momentum_buffer": torch.zeros(3, 3)}}
    with pytest.raises(TrainingStopped, match="optimizer state momentum_buffer of parameter 0"):
        train(config, _train_set(data, config), initial_optimizer_state=wrong)


def _correction(config: TrainingConfig, scale: float) -> dict[str, torch.Tensor]:
    model = build_model(config.model, num_classes=1, image_size=config.image_size, seed=0)
    generator = torch.Generator().manual_seed(5)
    return {
        name: torch.randn(param.shape, generator=generator) * scale
        for name, param in model.named_parameters()
    }


class _Stop(Exception):
    pass


def test_a_drift_correction_moves_each_step_by_the_rate_times_it(data: Path) -> None:
    config = TrainingConfig.from_dict(
        {**CONFIG.to_dict(), "max_steps": 1, "checkpoint_every": 0, "scheduler": "constant",
         "warmup_steps": 0}
    )  # fmt: skip
    train_set = _train_set(data, config)
    correction = _correction(config, 0.05)
    plain = train(config, train_set)
    corrected = train(config, train_set, drift_correction=correction)
    zero = train(config, train_set, drift_correction={k: v * 0 for k, v in correction.items()})
    assert zero.weights_sha256 == plain.weights_sha256  # a zero correction changes no bit
    for name, value in correction.items():
        # After the optimizer's own step: the step the optimizer took, then -lr x correction.
        expected = plain.state[name] - value * config.lr
        assert torch.equal(corrected.state[name], expected), name
    for key in plain.state.keys() - correction.keys():  # buffers are not steered
        assert torch.equal(corrected.state[key], plain.state[key]), key


def test_a_drift_corrected_run_resumes_bit_for_bit(data: Path, tmp_path: Path) -> None:
    config = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 6})
    train_set = _train_set(data, config)
    correction = _correction(config, 0.05)
    uninterrupted = train(config, train_set, drift_correction=correction)

    def stop_at_five(p: Progress) -> None:
        if p.step == 5:
            raise _Stop

    with pytest.raises(_Stop):
        train(
            config, train_set, drift_correction=correction, checkpoint_dir=tmp_path,
            progress=stop_at_five,
        )  # fmt: skip
    resumed = train(config, train_set, drift_correction=correction, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 4
    assert resumed.weights_sha256 == uninterrupted.weights_sha256
    other = {k: v * 2 for k, v in correction.items()}
    with pytest.raises(CheckpointMismatch, match="another drift correction"):
        train(config, train_set, drift_correction=other, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatch, match="another drift correction"):
        train(config, train_set, checkpoint_dir=tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"no.such.parameter": torch.zeros(1)}, "names no parameter"),
        ("shape", "not float32"),
        ("nan", "not finite"),
    ],
)
def test_it_refuses_a_drift_correction_that_does_not_fit(
    data: Path, change: object, match: str
) -> None:
    config = TrainingConfig.from_dict({**CONFIG.to_dict(), "max_steps": 1, "checkpoint_every": 0})
    correction = _correction(config, 0.0)
    first = next(iter(correction))
    if change == "shape":
        correction[first] = torch.zeros(3)
    elif change == "nan":
        correction[first] = torch.full_like(correction[first], math.nan)
    else:
        assert isinstance(change, dict)
        correction.update(change)
    with pytest.raises(TrainingStopped, match=match):
        train(config, _train_set(data, config), drift_correction=correction)
