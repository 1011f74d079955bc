"""A node's training config: everything that decides the weights a local run produces.

A round names its config by hash (``config_sha256``), so the encoding is
canonical JSON and every field is data: no paths, devices or callbacks (those
are arguments of ``train``). ``fedbn`` (normalisation layers kept local) and
``drift_control`` (SCAFFOLD's control variates, training/federated/drift.py) are
carried for the federated layer; the loop itself reads neither: a node passes the
drift correction to ``train``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from training.detection.models import MODELS, model_names
from training.detection.reader import Augmentation, ReaderError, Window

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("constant", "cosine")


class ConfigError(ValueError):
    """A config that cannot be trained; the message names the field."""


@dataclass(frozen=True)
class TrainingConfig:
    model: str = "fcos_tiny"
    classes: tuple[str, ...] = ("lesion",)
    image_size: int = 256
    window: Window = field(default_factory=Window)
    augmentation: Augmentation = field(default_factory=Augmentation)
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None  # when set, the run is exactly this many steps
    grad_clip_norm: float | None = 10.0
    checkpoint_every: int = 0  # steps; 0 never checkpoints
    seed: int = 0
    validation_fraction: float = 0.2
    fedbn: bool = False
    drift_control: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(
                f"model must be one of {', '.join(model_names())}, not {self.model!r}"
            )
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes must be distinct lesion labels, not {list(self.classes)}")
        if self.image_size < 32 or self.image_size % 32:
            raise ConfigError(f"image_size must be a multiple of 32, not {self.image_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "lr": self.lr}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be positive, not {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, not {self.max_steps}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ConfigError(f"grad_clip_norm must be positive or null, not {self.grad_clip_norm}")
        for name in ("warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), not {self.validation_fraction}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """From JSON-shaped data; an unknown or ill-typed field is a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        values = dict(data)
        try:
            if "window" in values:
                values["window"] = Window(**values["window"])
            if "augmentation" in values:
                values["augmentation"] = Augmentation(**values["augmentation"])
            if "classes" in values:
                values["classes"] = tuple(values["classes"])
            return cls(**values)
        except ReaderError as exc:
            raise ConfigError(str(exc)) from exc
        except TypeError as exc:
            raise ConfigError(f"malformed config: {exc}") from exc

    def canonical_bytes(self) -> bytes:
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()

    @property
    def sha256(self) -> str:
        """The hash a round records for this config."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()
