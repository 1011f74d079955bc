"""The output serializers' plain conversions (portal.core.serializers._represent) give what
each DRF field's ``to_representation`` gives, value for value, and a choice's label
(``_display``) what Django's ``get_<field>_display`` gives; and prepared rows
(portal.core.prepared.PreparedRows) are the rows their queryset reads, page for page."""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework import serializers

from portal.consortium.models import Member, Role, Staff
from portal.core.prepared import PreparedRows
from portal.core.serializers import OutputSerializer, _display, _represent
from portal.datasets import selectors
from portal.datasets.models import Dataset
from tests.factories import DatasetFactory, DatasetVersionFactory, MemberFactory
from tests.portal.core.test_output_serializer import drf, fast

UTC = datetime.UTC
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
MOMENTS = [
    datetime.datetime(2026, 12, 1, 2, 30, tzinfo=UTC),
    datetime.datetime(2026, 12, 1, 2, 30, 5, 123456, tzinfo=UTC),
    datetime.datetime(2026, 6, 1, 23, 59, 59, tzinfo=KOLKATA),
    datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-3))),
    datetime.datetime(2026, 12, 1, 2, 30),  # naive: DRF makes it aware
    "2026-12-01T02:30:00Z",  # a string: DRF answers it as it is
]


class Row(OutputSerializer):
    id = serializers.UUIDField()
    count = serializers.IntegerField()
    name = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)
    local = serializers.DateTimeField(default_timezone=KOLKATA)
    stamp = serializers.DateTimeField(format="%Y-%m-%d %H:%M")
    hexed = serializers.UUIDField(format="hex")
    price = serializers.DecimalField(max_digits=8, decimal_places=2)
    flag = serializers.BooleanField()


def bound() -> dict[str, serializers.Field]:
    row = Row()
    row._plan  # noqa: B018 (binds the fields and asks each DateTimeField its time zone once)
    return dict(row.fields)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_each_conversion_is_the_field_s_own(zone: str):
    values: dict[str, list[Any]] = {
        "count": [0, -1, 2**70, True, "12", Decimal("3")],
        "name": ["", "é ✓", 5, uuid.UUID(int=7), 2**70],
        "id": [uuid.UUID(int=0), uuid.uuid4()],
        "hexed": [uuid.uuid4()],
        "at": MOMENTS,
        "local": MOMENTS,
        "stamp": MOMENTS,
        "price": [Decimal("1.50"), 2, "3.333"],
        "flag": [True, False, 1, "true"],
    }
    with override_settings(TIME_ZONE=zone):
        fields = bound()
        for name, field in fields.items():
            represent = _represent(field)
            for value in values[name]:
                assert represent(value) == field.to_representation(value), (name, value)


def test_plain_rows_with_nulls_answer_as_drf_does():
    rows = [
        {
            "id": uuid.uuid4(),
            "count": 2**63 - 1,
            "name": "a",
            "at": MOMENTS[1],
            "local": MOMENTS[2],
            "stamp": MOMENTS[0],
            "hexed": uuid.uuid4(),
            "price": Decimal("9.99"),
            "flag": False,
        },
        {
            "id": uuid.uuid4(),
            "count": 0,
            "name": "",
            "at": None,
            "local": MOMENTS[4],
            "stamp": MOMENTS[3],
            "hexed": uuid.uuid4(),
            "price": None,
            "flag": None,
        },
    ]
    assert fast(Row, rows[0]) == drf(Row, rows[0])
    assert fast(Row, rows[1]) == drf(Row, rows[1])
    many = Row(rows, many=True).data
    assert many == [drf(Row, row) for row in rows]


@pytest.mark.django_db
def test_prepared_rows_are_the_queryset_s_rows_page_for_page():
    owner = MemberFactory(chain_member_id=3)
    for _ in range(5):
        DatasetVersionFactory(dataset=DatasetFactory(owner=owner, status=Dataset.Status.ACTIVE))
    DatasetFactory(owner=MemberFactory(chain_member_id=None), status=Dataset.Status.ACTIVE)
    for iso_timestamps in (False, True):
        prepared = selectors._catalogue(iso_timestamps)
        queryset = prepared._queryset.all()
        assert prepared.count() == queryset.count() == 6
        for start, stop in [(0, 6), (0, 100), (2, 4), (5, 6), (6, 10), (3, 3)]:
            assert prepared[start:stop] == list(queryset[start:stop]), (start, stop)
    with pytest.raises(ValueError):
        PreparedRows(Dataset.objects.order_by().values("id"))  # unordered: pages would be arbitrary
    with pytest.raises(TypeError):
        prepared[1]


def test_each_serializer_binds_copies_and_the_declared_fields_stay_unbound():
    first, second = Row(), Row()
    for name, declared in Row._declared_fields.items():
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
        assert declared.field_name is None and getattr(declared, "parent", None) is None
    first._plan  # noqa: B018 (sets each DateTimeField's time zone on its copy only)
    assert not hasattr(Row._declared_fields["at"], "timezone")
    assert not hasattr(second.fields["at"], "timezone")


@pytest.mark.django_db
def test_a_choice_s_label_is_django_s_own():
    member = MemberFactory()
    for model, name, values in [
        (Member, "role", [*Role.values, 99]),
        (Member, "status", [*Member.Status.values, "unknown"]),
        (Staff, "role", [*Staff.Role.values, "unknown"]),
    ]:
        display = _display(model, f"get_{name}_display")
        assert display is not None
        row = member if model is Member else Staff(role="")
        for value in values:
            setattr(row, name, value)
            assert display(row) == getattr(row, f"get_{name}_display")(), (model, name, value)
    assert _display(Member, "get_name_display") is None  # no choices: DRF's own call
    assert _display(Member, "name") is None
