"""upload_dataset prints one line per refused file, with its reason, and no traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chain.keystore import write_keystore
from training.ingest.phantoms import write_ct_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def node_option(steward_chain, node) -> str:
    """--node for a node the chain registers: packaging starts without asking the portal."""
    return f"{node.node_id}={node.data_public_key}"


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "steward.json"
    write_keystore(path, "0x" + "33" * 32, "pw", kdf="pbkdf2", iterations=1024)
    (tmp_path / "pw").write_text("pw\n")
    return path


def _upload(source: Path, keystore: Path, node: str, tmp_path: Path, **options: object) -> str:
    stderr = io.StringIO()
    secret = tmp_path / "uid-secret.bin"
    secret.write_bytes(b"u" * 32)  # the hospital's UID secret, as its admin hands it over
    with pytest.raises(CommandError) as failed:
        call_command(
            "upload_dataset",
            str(source),
            portal="http://127.0.0.1:9",
            token="t",
            keystore=str(keystore),
            password_file=str(tmp_path / "pw"),
            node=[node],
            work_dir=str(tmp_path / "work"),
            no_progress=True,
            uid_secret_file=secret,
            stderr=stderr,
            **options,
        )
    assert "\n" not in str(failed.value)
    assert "2 file(s) refused" in str(failed.value)
    return stderr.getvalue()


def test_it_prints_one_line_per_refused_file(tmp_path, keystore, node_option):
    source = tmp_path / "source"
    write_ct_dataset(source, profile="hospital-a", count=2, seed=0, rows=16, cols=16)
    (source / "bomb.dcm").write_bytes(bytes(128) + b"DICM" + b"\xff" * 64)
    (source / "notes.txt").write_text("Patient: Jane Doe")
    lines = _upload(source, keystore, node_option, tmp_path).strip().splitlines()
    assert lines == [
        "refused bomb.dcm: no Transfer Syntax UID in the File Meta Information",
        "refused notes.txt: not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix",
    ]
    assert not (tmp_path / "work" / "package").exists()
    assert not [p for p in (tmp_path / "work").iterdir() if ".partial-" in p.name]


def test_it_takes_the_size_cap_from_the_flag(tmp_path, keystore, node_option):
    source = tmp_path / "source"
    write_ct_dataset(source, profile="hospital-a", count=2, seed=0, rows=16, cols=16)
    lines = _upload(source, keystore, node_option, tmp_path, max_file_bytes=1024)
    lines = lines.strip().splitlines()
    assert len(lines) == 2
    assert all("more than the per-file cap of 1.0 KiB" in line for line in lines)
