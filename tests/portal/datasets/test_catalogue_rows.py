"""The catalogue's API page reads plain rows (selectors.catalogue_rows) where the detail
route reads a model: each list entry is what the dataset's own route answers, its newest
shown version included, whatever versions came before or are still uploading."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from portal.datasets.models import Dataset, DatasetVersion
from portal.datasets.serializers import catalogue_entry
from tests.factories import ActiveMemberFactory, DatasetFactory, DatasetVersionFactory, StaffFactory

pytestmark = pytest.mark.django_db

CATALOGUE = "/api/v1/datasets/"


def test_each_entry_is_what_the_datasets_own_route_answers():
    owner, other = ActiveMemberFactory(), ActiveMemberFactory()
    three = DatasetFactory(owner=owner, title="three versions")
    for number in (1, 2, 3):
        DatasetVersionFactory(dataset=three, number=number)
    uploading = DatasetFactory(owner=other, title="newest still uploading")
    DatasetVersionFactory(dataset=uploading, number=1)
    DatasetVersionFactory(dataset=uploading, number=2, state=DatasetVersion.State.UPLOADING)
    bare = DatasetFactory(owner=other, title="no version", status=Dataset.Status.WITHDRAWN)
    DatasetFactory(owner=owner, title="hidden", status=Dataset.Status.UPLOADING)
    api = APIClient()
    api.force_authenticate(StaffFactory(member=owner).user)

    listed = api.get(CATALOGUE)

    assert listed.status_code == 200, listed.content
    entries = {entry["title"]: entry for entry in listed.json()["results"]}
    assert set(entries) == {"three versions", "newest still uploading", "no version"}
    for dataset in (three, uploading, bare):
        detail = api.get(f"{CATALOGUE}{dataset.id}/")
        assert detail.status_code == 200, detail.content
        assert entries[dataset.title] == detail.json()
        # the same JSON, key order included (the list builds its entries without fields)
        assert json.dumps(entries[dataset.title]) == json.dumps(catalogue_entry(dataset))
    assert entries["three versions"]["version"]["number"] == 3
    assert entries["newest still uploading"]["version"]["number"] == 1
    assert entries["no version"]["version"] is None
    assert entries["three versions"]["owner"] == {
        "id": owner.pk,
        "name": owner.name,
        "governance_address": owner.governance_address,
        "chain_member_id": owner.chain_member_id,
    }
    assert entries["three versions"]["chain_id"] == three.chain_id
    assert list(entries) == ["no version", "newest still uploading", "three versions"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_the_timestamps_are_the_serializers_to_the_microsecond_in_any_time_zone(zone):
    owner = ActiveMemberFactory()
    api = APIClient()
    api.force_authenticate(StaffFactory(member=owner).user)
    stamps = [
        datetime(2026, 12, 1, 4, 39, 43, tzinfo=UTC),
        datetime(2026, 12, 1, 4, 39, 43, 120000, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, 1, tzinfo=UTC),  # summer time in Paris
    ]
    datasets = []
    for i, stamp in enumerate(stamps):
        dataset = DatasetFactory(owner=owner, title=f"dataset {i}")
        version = DatasetVersionFactory(dataset=dataset, number=1)
        Dataset.objects.filter(pk=dataset.pk).update(created_at=stamp)
        DatasetVersion.objects.filter(pk=version.pk).update(created_at=stamps[-1 - i])
        dataset.refresh_from_db()
        datasets.append(dataset)

    with timezone.override(zone):
        listed = api.get(CATALOGUE)
        expected = [json.dumps(catalogue_entry(d)) for d in sorted(datasets, key=_newest)]

    assert listed.status_code == 200, listed.content
    assert [json.dumps(entry) for entry in listed.json()["results"]] == expected
    if zone == "UTC":
        assert listed.json()["results"][0]["created_at"] == "2026-12-01T04:39:43.120000Z"


def _newest(dataset: Dataset) -> object:
    return (-dataset.created_at.timestamp(), dataset.pk)
