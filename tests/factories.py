"""Factories for rows that need no chain, and helpers for API and admin clients."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from eth_account import Account
from rest_framework.test import APIClient

from portal.consortium.models import Invitation, Member, Proposal, Role, Staff, Vote
from portal.core.models import ChainEventRecord, ChainSyncState
from portal.datasets.models import Dataset, DatasetVersion, Grant
from portal.nodes.models import Node

PASSWORD = "a-long-pass-123"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)


class SuperuserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"governor{n}")
    is_staff = True
    is_superuser = True


def _address(n: int) -> str:
    return Account.from_key((0x5000 + n).to_bytes(32, "big")).address


class MemberFactory(factory.django.DjangoModelFactory):
    """An applicant that no chain knows of yet (mirrored fields filled in by hand)."""

    class Meta:
        model = Member

    name = factory.Sequence(lambda n: f"Hospital {n}")
    contact_email = factory.Sequence(lambda n: f"admin@hospital{n}.example")
    role = Role.HOSPITAL
    governance_address = factory.Sequence(_address)
    data_public_key = factory.Sequence(lambda n: "0x" + f"{n:064x}")
    name_hash = factory.Sequence(lambda n: "0x" + f"{n + 7:064x}")
    status = Member.Status.APPLIED


class ActiveMemberFactory(MemberFactory):
    status = Member.Status.ACTIVE
    chain_member_id = factory.Sequence(lambda n: 1000 + n)


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Staff

    user = factory.SubFactory(UserFactory)
    member = factory.SubFactory(ActiveMemberFactory)
    role = Staff.Role.CLINICIAN


class ProposalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Proposal

    chain_proposal_id = factory.Sequence(lambda n: 500 + n)
    kind = Proposal.Kind.ADMISSION
    status = Proposal.Status.OPEN
    subject = factory.SubFactory(MemberFactory, status=Member.Status.PROPOSED)
    sponsor = factory.SubFactory(ActiveMemberFactory)
    eligible = 3
    deadline = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))
    opened_block = 10


class VoteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Vote

    proposal = factory.SubFactory(ProposalFactory)
    voter = factory.SubFactory(ActiveMemberFactory)
    support = True
    tx_hash = factory.Sequence(lambda n: "0x" + f"{n:064x}")
    block_number = 11


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    member = factory.SubFactory(ActiveMemberFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.org")
    role = Staff.Role.STEWARD


class ChainSyncStateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChainSyncState
        django_get_or_create = ["name"]

    name = "ConsortiumRegistry"
    last_block = 41
    head_block = 42
    last_success_at = factory.LazyFunction(timezone.now)


class ChainEventRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChainEventRecord

    block_number = 12
    block_hash = "0x" + "b" * 64
    tx_hash = factory.Sequence(lambda n: "0x" + f"{n:064x}")
    log_index = 0
    name = "ProposalOpened"
    args = factory.LazyFunction(lambda: {"proposalId": 1})


def _hex32(n: int) -> str:
    return "0x" + f"{n:064x}"


class NodeFactory(factory.django.DjangoModelFactory):
    """A node mirrored as if registered on chain (no chain knows it)."""

    class Meta:
        model = Node

    member = factory.SubFactory(ActiveMemberFactory)
    node_id = factory.Sequence(lambda n: _hex32(0x6000 + n))
    label = factory.Sequence(lambda n: f"node-{n}")
    signer_address = factory.Sequence(lambda n: _address(0x600 + n))
    data_public_key = factory.Sequence(lambda n: _hex32(0x7000 + n))
    registered_block = 9


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    owner = factory.SubFactory(ActiveMemberFactory)
    title = factory.Sequence(lambda n: f"Phantom CT {n}")
    modality = "CT"
    instances = 20
    annotated_instances = 20
    boxes = 20
    status = Dataset.Status.ACTIVE


class DatasetVersionFactory(factory.django.DjangoModelFactory):
    """An anchored version whose manifest is a stand-in (no chunks behind it)."""

    class Meta:
        model = DatasetVersion

    dataset = factory.SubFactory(DatasetFactory)
    number = 1
    manifest = factory.LazyAttribute(lambda v: {"dataset_id": str(v.dataset.id), "chunks": []})
    manifest_sha256 = factory.Sequence(lambda n: _hex32(0x8000 + n))
    signature = "0x" + "11" * 65
    signer_address = factory.LazyAttribute(lambda v: v.dataset.owner.governance_address)
    signature_nonce = 0
    chunk_count = 1
    ciphertext_size = 1024
    state = DatasetVersion.State.ANCHORED
    anchored_tx = factory.Sequence(lambda n: _hex32(0x9000 + n))
    anchored_block = 12


class GrantFactory(factory.django.DjangoModelFactory):
    """An active grant of a version to a node of the same member."""

    class Meta:
        model = Grant

    version = factory.SubFactory(DatasetVersionFactory)
    node = factory.SubFactory(NodeFactory, member=factory.SelfAttribute("..version.dataset.owner"))
    wrapped_key = "0x" + "22" * 92
    grant_hash = factory.Sequence(lambda n: _hex32(0xA000 + n))
    signature = "0x" + "33" * 65
    signer_address = factory.LazyAttribute(lambda g: g.version.dataset.owner.governance_address)
    signature_nonce = 1
    state = Grant.State.ACTIVE
    recorded_tx = factory.Sequence(lambda n: _hex32(0xB000 + n))
    recorded_block = 13


class TOTPDeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TOTPDevice

    user = factory.SubFactory(UserFactory)
    name = "authenticator"
    confirmed = True


def totp_code(device: TOTPDevice) -> str:
    """The code the user's authenticator app shows right now."""
    code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{code:0{device.digits}d}"


def api_client(user: Any = None) -> APIClient:
    """An API client acting as `user` (as with a token), or anonymous."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def verified_login(client: Client, user: Any) -> TOTPDevice:
    """Log `user` in through the session with a second factor already verified."""
    device = TOTPDeviceFactory(user=user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def signed_in(user: Any) -> Client:
    """A client signed in as `user`, second factor verified (admins need it)."""
    client = Client()
    verified_login(client, user)
    return client


def messages_of(response: Any) -> list[str]:
    """The flash messages a (followed) page response carries."""
    return [str(m) for m in response.context["messages"]] if response.context else []


def wallet_sign(key: str, typed_data: dict[str, Any]) -> str:
    """What a wallet's eth_signTypedData_v4 returns for the JSON the API gave."""
    signed = Account.sign_typed_data(key, full_message=typed_data)
    return "0x" + bytes(signed.signature).hex()


def other_applicant(seed: int, name: str, username: str) -> Member:
    """A second applicant hospital (with its own admin login), besides the `applicant` fixture."""
    from portal.consortium import services
    from tests.conftest import Applicant, sign_application

    key = "0x" + (0x3000 + seed).to_bytes(32, "big").hex()
    keys = Applicant(
        name=name,
        key=key,
        address=Account.from_key(key).address,
        data_key="0x" + f"{seed:02x}" * 32,
    )
    return services.application_submit(
        name=name,
        contact_email=f"admin@{username}.example",
        governance_address=keys.address,
        data_public_key=keys.data_key,
        signature=sign_application(keys),
        admin_username=username,
        admin_password="a-long-pass-123",
    )
