"""Schemathesis fuzzes every route of the published schema, anonymously, as a member's
admin and as a training node: no answer is a server error, and every answer is one the
schema documents (its status, content type and body).

The requests go over HTTP to a live test server (pytest-django's `live_server`, in this
process, so it shares the test's database and in-process chain), as an outside client's
would. Random ids only ever
find 404s, so the signed-in runs also fuzz each route with the ids of real objects (a
member, an applicant's proposal, a committed dataset, its upload, a node, a staff row).
Examples are few and derandomized: the run is short and the same every time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.throttling import AnonRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.core.tokens import api_token_issue
from tests.examples import examples

pytestmark = pytest.mark.django_db(transaction=True)  # the live server's thread sees the rows

EXAMPLES = 3  # per operation and mode; 30 in `make test-deep`
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.fixture
def api_schema(monkeypatch, datasets_chain, live_server) -> Any:
    # The class reads its rates once at import; a fuzz run is thousands of anonymous calls.
    monkeypatch.setattr(
        AnonRateThrottle, "THROTTLE_RATES", {"anon": "1000000/min", "health": "1000000/min"}
    )
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")


@pytest.fixture
def world(
    consortium, datasets_chain, member_admin, clinician, applicant, tmp_path: Path
) -> dict[str, Any]:
    """Real objects for the path ids: a dataset committed with a grant to the admin's node."""
    from portal.consortium import services as consortium_services
    from portal.consortium.models import Member
    from portal.datasets import services as dataset_services
    from portal.nodes import services as node_services
    from portal.nodes.agent.keystore import NodeKeystore
    from training.crypto import wrap_key
    from training.ingest.dataset import chunk_file_name, package_dataset
    from training.ingest.phantoms import write_ct_dataset

    mary = Member.objects.get(governance_address=consortium[0].address)
    city = Member.objects.get(governance_address=consortium[1].address)
    identity = NodeKeystore.create(tmp_path / "node", "node-pass").identity
    node = node_services.node_register(
        member=mary,
        node_id=identity.node_id,
        signer_address=identity.signer_address,
        data_public_key=identity.data_public_key,
        label="mary-1",
    )
    annotations = write_ct_dataset(
        tmp_path / "dicom", profile="hospital-a", count=2, seed=7, rows=64, cols=64
    )
    package = package_dataset(
        tmp_path / "dicom",
        annotations,
        tmp_path / "pkg",
        dataset_id=str(uuid.uuid4()),
        uid_secret=b"s" * 32,
    )
    wrapped = wrap_key(
        package.data_key,
        bytes.fromhex(node.data_public_key[2:]),
        dataset_id=package.dataset_id,
        node_id=node.node_id,
    )
    upload, _ = dataset_services.upload_create(
        user=member_admin,
        member=mary,
        dataset_id=uuid.UUID(package.dataset_id),
        title="Phantom CT",
        manifest=package.manifest,
        signer=None,
        signature=None,
        grants=[dataset_services.GrantRequest(node=node, wrapped_key=wrapped.to_bytes())],
    )
    for index in range(upload.expected_chunks):
        data = (tmp_path / "pkg" / chunk_file_name(index)).read_bytes()
        upload = dataset_services.upload_chunk_store(upload=upload, index=index, data=data)
    dataset_services.upload_commit(upload=upload)
    proposal = consortium_services.admission_sponsor(sponsor=mary, applicant=applicant)
    return {
        "applicant_id": applicant.pk,
        "member_id": city.pk,
        "proposal_id": proposal.chain_proposal_id,
        "staff_id": clinician.staff.pk,
        "dataset_id": package.dataset_id,
        "upload_id": str(upload.pk),
        "node_id": node.node_id,
        "index": 0,
        "node_token": node_services.node_token_issue(node=node),
        # A spare token of the admin's, for the revoke route (not the one the fuzz uses).
        "token_id": api_token_issue(user=member_admin)[0].pk,
    }


def _known_ids(path: str, world: dict[str, Any]) -> dict[str, Any]:
    names = re.findall(r"{(\w+)}", path)
    if path.startswith("/api/v1/applications/"):
        world = {**world, "member_id": world["applicant_id"]}
    return {name: world[name] for name in names}


def _modes(operation: Any, *, fixed_ids: bool) -> list[Any]:
    """Negative data only where there is an input to break: hunting for an invalid value of a
    free-form string takes Hypothesis seconds and then gives up."""
    constrained = not fixed_ids and any(
        set(p.definition.get("schema", {})) - {"type"}
        or p.definition.get("schema", {}).get("type") != "string"
        for p in operation.path_parameters
    )
    if len(operation.body) or len(operation.query) or constrained:
        return MODES
    return MODES[:1]


def _fuzz(schema: Any, headers: dict[str, str], world: dict[str, Any] | None = None) -> list[str]:
    """Every failed check, one line each (deduplicated), over every operation and mode."""
    failures: dict[str, None] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        passes: list[dict[str, Any] | None] = [None]
        if world is not None and "{" in operation.path:
            passes.append(_known_ids(operation.path, world))
        for ids in passes:
            for mode in _modes(operation, fixed_ids=ids is not None):
                _run(operation, mode, ids, headers, lambda line: failures.setdefault(line))
    return list(failures)


def _run(
    operation: Any,
    mode: Any,
    ids: dict[str, Any] | None,
    headers: dict[str, str],
    report: Callable[[str], Any],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids))
    @settings(
        max_examples=examples(EXAMPLES),
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except (Exception, FailureGroup) as exc:
            for failure in getattr(exc, "exceptions", [exc]):
                first = " | ".join(str(failure).strip().splitlines()[:4])
                report(f"{operation.label} [{mode}]: {type(failure).__name__}: {first}")

    try:
        check()
    except Unsatisfiable:
        # Some inputs cannot be made invalid (a free-form string, an object of optional fields).
        if mode.is_positive:
            raise


def test_it_answers_every_anonymous_request_as_documented(api_schema):
    failures = _fuzz(api_schema, {})

    assert not failures, "\n".join(failures)


def test_it_answers_every_request_of_a_member_admin_as_documented(api_schema, world, member_admin):
    _, key = api_token_issue(user=member_admin)

    failures = _fuzz(api_schema, {"Authorization": f"Token {key}"}, world)

    assert not failures, "\n".join(failures)


def test_it_answers_every_request_of_a_node_as_documented(api_schema, world):
    failures = _fuzz(api_schema, {"Authorization": f"Token {world['node_token']}"}, world)

    assert not failures, "\n".join(failures)
