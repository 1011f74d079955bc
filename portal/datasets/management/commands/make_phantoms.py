"""Write synthetic CT phantoms (DICOM + annotations) for a hospital's scanner profile."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console

from training.ingest.phantoms import PROFILES, contrast_to_noise, write_ct_dataset


class Command(BaseCommand):
    help = (
        "Write CT-like DICOM slices with elliptical lesions and exact boxes, one scanner "
        "profile per hospital (non-IID); difficulty knobs override the profile."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path, help="folder to write (one subfolder per profile)")
        parser.add_argument(
            "--profile", action="append", choices=sorted(PROFILES), help="default: all"
        )
        parser.add_argument("--count", type=int, default=20, help="slices per profile")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--size", type=int, default=256, help="rows = columns")
        parser.add_argument(
            "--contrast", type=float, nargs=2, metavar=("LOW", "HIGH"), help="lesion HU offset"
        )
        parser.add_argument(
            "--lesion-radius",
            type=float,
            nargs=2,
            metavar=("MIN", "MAX"),
            help="lesion radius range in pixels at 256x256 (scaled with --size)",
        )
        parser.add_argument("--noise", type=float, help="noise sigma (HU)")
        parser.add_argument("--texture", type=float, help="lesion texture amplitude (HU)")
        parser.add_argument("--distractors", type=int, help="look-alike structures per slice")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["count"] < 1 or opts["size"] < 64:
            raise CommandError("--count must be at least 1 and --size at least 64")
        overrides: dict[str, Any] = {}
        if opts["contrast"]:
            overrides["lesion_contrast_hu"] = tuple(opts["contrast"])
        if opts["lesion_radius"]:
            low, high = opts["lesion_radius"]
            if not 1 <= low <= high:
                raise CommandError("--lesion-radius needs 1 <= MIN <= MAX (pixels at 256x256)")
            overrides["lesion_size_mix"] = ((1.0, low, high),)
        if opts["noise"] is not None:
            overrides["noise_sigma"] = opts["noise"]
        if opts["texture"] is not None:
            overrides["texture_amplitude"] = opts["texture"]
        if opts["distractors"] is not None:
            overrides["distractor_count"] = opts["distractors"]
        console = Console()
        for name in opts["profile"] or sorted(PROFILES):
            profile = dataclasses.replace(PROFILES[name], **overrides)
            target = opts["out"] / name
            if target.exists() and any(target.iterdir()):
                raise CommandError(f"{target} is not empty: choose another folder")
            with console.status(f"writing {opts['count']} slices for {name}"):
                annotations = write_ct_dataset(
                    target,
                    profile=profile,
                    count=opts["count"],
                    seed=opts["seed"],
                    rows=opts["size"],
                    cols=opts["size"],
                )
            console.print(
                f"{name}: {opts['count']} slices in {target}, annotations {annotations.name}, "
                f"lesion contrast-to-noise {contrast_to_noise(profile):.2f}"
            )
