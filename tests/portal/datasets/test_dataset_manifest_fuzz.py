"""Hypothesis: whatever a client sends as a manifest or grant, the answer is a 4xx JSON
error with a message, and nothing is stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from datasets_api_helpers import UPLOADS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.datasets.models import Dataset, Upload
from tests.examples import examples

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def broken_manifests(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """The valid manifest with some fields replaced, removed or added, or anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    manifest = copy.deepcopy(valid)
    keys = sorted(manifest)
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            manifest.pop(key)
        else:
            manifest[key] = draw(json_values)
    return manifest


_fuzz = settings(
    max_examples=examples(40),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_it_answers_any_broken_manifest_with_a_json_error_and_stores_nothing(
    datasets_chain, member_admin, package, api_as
):
    api = api_as(member_admin)

    @_fuzz
    @given(manifest=broken_manifests(package.manifest), grants=st.lists(json_values, max_size=2))
    def check(manifest: Any, grants: list[Any]) -> None:
        response = api.post(
            UPLOADS,
            {"dataset_id": package.dataset_id, "manifest": manifest, "grants": grants},
            format="json",
        )
        assert 400 <= response.status_code < 500, response.content
        assert isinstance(response.json()["error"], str) and response.json()["error"]
        assert not Dataset.objects.exists() and not Upload.objects.exists()

    check()
