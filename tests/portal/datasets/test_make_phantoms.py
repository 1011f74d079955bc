from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import CommandError, call_command


def test_it_writes_each_profile_with_annotations(tmp_path: Path, capsys) -> None:
    call_command(
        "make_phantoms",
        str(tmp_path),
        "--profile",
        "hospital-a",
        "--profile",
        "hospital-b",
        "--count",
        "2",
        "--size",
        "64",
        "--contrast",
        "10",
        "20",
    )
    for name in ("hospital-a", "hospital-b"):
        files = sorted((tmp_path / name).glob("*.dcm"))
        assert len(files) == 2
        ds = pydicom.dcmread(files[0])
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        notes = json.loads((tmp_path / name / "annotations.json").read_text())
        assert set(notes["instances"]) == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    assert "contrast-to-noise" in capsys.readouterr().out


def test_it_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "hospital-a").mkdir()
    (tmp_path / "hospital-a" / "x.dcm").write_bytes(b"x")
    with pytest.raises(CommandError, match="not empty"):
        call_command("make_phantoms", str(tmp_path), "--profile", "hospital-a", "--count", "1")


def test_the_lesion_radius_knob_sets_the_box_sizes(tmp_path: Path) -> None:
    sides = {}
    for radius in (3, 14):
        out = tmp_path / f"r{radius}"
        call_command(
            "make_phantoms", str(out), "--profile", "hospital-c", "--count", "4",
            "--lesion-radius", str(radius), str(radius),
        )  # fmt: skip
        notes = json.loads((out / "hospital-c" / "annotations.json").read_text())
        boxes = [b for entry in notes["instances"].values() for b in entry["boxes"]]
        assert boxes
        sides[radius] = max(max(b["x1"] - b["x0"], b["y1"] - b["y0"]) for b in boxes)
    assert sides[3] <= 2 * 3 + 3 < 2 * 14 - 3 <= sides[14]


def test_it_refuses_an_inverted_lesion_radius(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="lesion-radius"):
        call_command("make_phantoms", str(tmp_path), "--lesion-radius", "8", "2")
