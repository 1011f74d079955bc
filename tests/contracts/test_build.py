from __future__ import annotations

import subprocess
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_it_rebuilds_the_committed_artifacts_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        ["node", str(CONTRACTS / "compile.mjs"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    built = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in (CONTRACTS / "build").glob("*.json"))
    assert built == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (CONTRACTS / "build" / name).read_bytes(), name
