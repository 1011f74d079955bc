from __future__ import annotations

from pathlib import Path

import pytest
import requests
from datasets_api_helpers import DjangoTestAdapter
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from chain.keystore import write_keystore
from portal.datasets.management.commands.upload_dataset import Command
from portal.datasets.models import Dataset, Upload

pytestmark = pytest.mark.django_db


class FlakyAdapter(DjangoTestAdapter):
    """Drops the connection after `chunks` chunk uploads, like a network cut."""

    def __init__(self, chunks: int | None) -> None:
        super().__init__()
        self.left = chunks

    def send(self, request, **kwargs):
        if request.method == "PUT" and self.left is not None:
            if self.left == 0:
                raise requests.ConnectionError("connection reset by peer")
            self.left -= 1
        return super().send(request, **kwargs)


def _session(adapter):
    def make() -> requests.Session:
        session = requests.Session()
        session.mount("http://testserver/", adapter)
        return session

    return make


@pytest.fixture
def steward_files(consortium, member_admin, tmp_path: Path):
    keystore = tmp_path / "governance.json"
    write_keystore(keystore, consortium[0].key, "pw", kdf="pbkdf2", iterations=1024)
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "token").write_text(Token.objects.create(user=member_admin).key)
    return keystore


def _run(phantoms, steward_files, tmp_path: Path, adapter, monkeypatch) -> str:
    source, annotations = phantoms
    monkeypatch.setattr(Command, "session_factory", staticmethod(_session(adapter)))
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        call_command(
            "upload_dataset",
            str(source),
            annotations=str(annotations),
            portal="http://testserver",
            token_file=str(tmp_path / "token"),
            keystore=str(steward_files),
            password_file=str(tmp_path / "pw"),
            title="CLI phantoms",
            work_dir=str(tmp_path / "work"),
            stdout=stdout,
        )
    return out.read_text()


def test_the_cli_resumes_an_interrupted_upload_and_commits(
    datasets_chain, phantoms, steward_files, node, tmp_path, monkeypatch
):
    with pytest.raises(CommandError, match="cannot reach the portal"):
        _run(phantoms, steward_files, tmp_path, FlakyAdapter(chunks=1), monkeypatch)
    upload = Upload.objects.get()
    assert upload.state == Upload.State.OPEN and upload.received == [0]
    assert not Dataset.objects.filter(status=Dataset.Status.ACTIVE).exists()

    output = _run(phantoms, steward_files, tmp_path, FlakyAdapter(chunks=None), monkeypatch)
    assert "version 1 anchored" in output
    upload.refresh_from_db()
    assert upload.state == Upload.State.COMMITTED and Upload.objects.count() == 1
    dataset = Dataset.objects.get()
    assert dataset.title == "CLI phantoms" and dataset.status == Dataset.Status.ACTIVE
    grant = dataset.versions.get().grants.get()
    assert grant.node == node and grant.state == "active"


def test_the_cli_reports_a_bad_annotation_file_in_one_line(
    datasets_chain, phantoms, steward_files, node, tmp_path, monkeypatch
):
    source, _ = phantoms
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "medchain-annotations/1", "instances": {"1.2.3": {"boxes": []}}}')
    monkeypatch.setattr(Command, "session_factory", staticmethod(_session(DjangoTestAdapter())))
    with pytest.raises(CommandError) as failed:
        call_command(
            "upload_dataset",
            str(source),
            annotations=str(bad),
            portal="http://testserver",
            token_file=str(tmp_path / "token"),
            keystore=str(steward_files),
            password_file=str(tmp_path / "pw"),
            work_dir=str(tmp_path / "work"),
        )
    assert "\n" not in str(failed.value) and str(failed.value)
    assert not Upload.objects.exists()
