"""The routes' output serializers answer exactly what DRF's own serializer answers for the
same fields (portal.core.serializers.OutputSerializer reads model attributes itself, for
speed), on the rows the list routes show: nested rows, a null relation, a method source,
a method field, a dict, a missing attribute."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import serializers

from portal.consortium.apis import MemberOutputSerializer, ProposalOutputSerializer
from portal.consortium.models import Proposal
from portal.consortium.selectors import proposal_list
from portal.core.serializers import OutputSerializer
from portal.datasets.serializers import DatasetOutputSerializer
from portal.nodes.apis import NodeOutputSerializer
from tests.factories import (
    DatasetFactory,
    DatasetVersionFactory,
    MemberFactory,
    NodeFactory,
    ProposalFactory,
    StaffFactory,
    VoteFactory,
)

pytestmark = pytest.mark.django_db


def drf(serializer_class: type[serializers.Serializer], instance: Any) -> Any:
    """What DRF's own Serializer.to_representation answers, at every level of nesting."""

    def plain(ser: Any) -> None:
        if isinstance(ser, serializers.ListSerializer):
            plain(ser.child)
        if isinstance(ser, serializers.Serializer):
            ser.to_representation = lambda obj, s=ser: serializers.Serializer.to_representation(
                s, obj
            )
            for field in ser.fields.values():
                plain(field)

    ser = serializer_class(instance)
    plain(ser)
    return ser.data


def fast(serializer_class: type[serializers.Serializer], instance: Any) -> Any:
    return serializer_class(instance).data


def test_members_proposals_datasets_and_nodes_answer_as_drf_does():
    member = MemberFactory(chain_member_id=7, status="active")
    proposal = ProposalFactory(subject=member, sponsor=None)
    VoteFactory(proposal=proposal, voter=MemberFactory(status="active"))
    sponsored = ProposalFactory(subject=MemberFactory())
    dataset = DatasetFactory(owner=member)
    DatasetVersionFactory(dataset=dataset)
    node = NodeFactory(member=member)

    viewer = StaffFactory(member=member).user
    for listed in proposal_list(viewer=viewer):
        assert fast(ProposalOutputSerializer, listed) == drf(ProposalOutputSerializer, listed)
    assert fast(ProposalOutputSerializer, sponsored)["sponsor"]["id"] == sponsored.sponsor_id
    assert fast(ProposalOutputSerializer, proposal)["sponsor"] is None
    assert fast(MemberOutputSerializer, member) == drf(MemberOutputSerializer, member)
    assert fast(MemberOutputSerializer, member)["status_display"] == member.get_status_display()
    assert fast(DatasetOutputSerializer, dataset) == drf(DatasetOutputSerializer, dataset)
    assert fast(NodeOutputSerializer, node) == drf(NodeOutputSerializer, node)


class Row(OutputSerializer):
    name = serializers.CharField()
    owner = serializers.CharField(source="sponsor.name")
    kind = serializers.CharField(source="get_kind_display")
    missing = serializers.CharField(required=False)
    defaulted = serializers.CharField(default="d")


def test_what_a_model_does_not_have_is_drf_s_to_answer():
    proposal = ProposalFactory(sponsor=None)
    as_dict = {"name": "n", "sponsor": {"name": "s"}, "get_kind_display": "k"}

    class Plain(serializers.Serializer):
        name = serializers.CharField()
        owner = serializers.CharField(source="sponsor.name")
        kind = serializers.CharField(source="get_kind_display")
        missing = serializers.CharField(required=False)
        defaulted = serializers.CharField(default="d")

    assert (
        Row(as_dict).data
        == Plain(as_dict).data
        == {
            "name": "n",
            "owner": "s",
            "kind": "k",
            "defaulted": "d",
        }
    )

    class Subject(OutputSerializer):
        subject = serializers.CharField(source="subject.name")
        kind = serializers.CharField(source="get_kind_display")

    assert Subject(proposal).data == {
        "subject": proposal.subject.name,
        "kind": Proposal.Kind(proposal.kind).label,
    }
    with pytest.raises(AttributeError):
        Row(proposal).data  # noqa: B018  (no sponsor: DRF's error, as with DRF's serializer)


def test_a_model_serializer_builds_its_fields_once_and_gives_each_serializer_copies():
    first, second = NodeOutputSerializer(), NodeOutputSerializer()
    own = serializers.ModelSerializer.get_fields(NodeOutputSerializer())  # DRF's, afresh

    assert list(first.fields) == list(own)
    for name, field in first.fields.items():
        assert type(field) is type(own[name])
        assert field._kwargs == own[name]._kwargs
        assert field is not second.fields[name] and field.parent is first
