"""Personas and an in-process chain shared by the portal tests.

The chain is web3's eth-tester (DESIGN.md allows it for unit tests); the
production-stack tests in tests/e2e use a real anvil node instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import settings as hypothesis_settings

from chain.client import ChainClient

# `make test`: the same examples on every run, so CI passes or fails on the code alone
# and a failure replays as it was. `make test-deep`: ten times the examples of every
# property test (tests/examples.py), drawn afresh on each run to find what is new.
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("deep", max_examples=1000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@dataclass
class Founder:
    name: str
    key: str
    address: str
    data_key: str


def _key(seed: int) -> str:
    return "0x" + (seed).to_bytes(32, "big").hex()


FOUNDER_NAMES = ["St. Mary's Hospital", "City General", "Northside Clinic"]


def make_founders() -> list[Founder]:
    out = []
    for i, name in enumerate(FOUNDER_NAMES):
        key = _key(0x1000 + i)
        out.append(
            Founder(
                name=name,
                key=key,
                address=Account.from_key(key).address,
                data_key="0x" + bytes([0x20 + i]).hex() * 32,
            )
        )
    return out


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["tests.hashers.OneIterationPBKDF2PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache(settings) -> Iterator[None]:
    """Throttle, lockout and relay counters start at zero in every test: each test gets a
    cache of its own in memory, never the shared one under var/ or in Redis."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-{uuid.uuid4()}",
        }
    }
    yield


@pytest.fixture(scope="session")
def chain_client() -> ChainClient:
    return ChainClient.in_process()


@pytest.fixture
def consortium(db, chain_client, settings, tmp_path: Path) -> Iterator[list[Founder]]:
    """A freshly deployed registry with three founding hospitals, mirrored into the database."""
    from chain.consortium_registry import ConsortiumRegistry
    from chain.consortium_registry import Founder as ChainFounder
    from portal.consortium import services
    from portal.core import chain as portal_chain
    from portal.core.models import ContractDeployment
    from portal.core.sync import chain_sync_run

    settings.DEMO_KEYSTORES = True
    settings.DEMO_KEYSTORE_DIR = tmp_path / "keystores"
    founders = make_founders()
    for f in founders:
        chain_client.fund(f.address, 10**18)
    block = chain_client.head()
    registry = ConsortiumRegistry.deploy(
        chain_client,
        founders=[
            ChainFounder(
                governance=f.address,
                role=1,
                data_key=f.data_key,
                name_hash=services.name_hash(f.name),
            )
            for f in founders
        ],
        quorum_bps=5000,
        voting_period=7 * 24 * 3600,
    )
    ContractDeployment.objects.create(
        name=portal_chain.REGISTRY,
        chain_id=chain_client.chain_id,
        address=registry.address,
        block_number=block + 1,
    )
    portal_chain.use_client(chain_client)
    for f in founders:
        services.founding_member_record(
            name=f.name,
            contact_email=f"admin@{f.name.split()[0].lower().rstrip('.')}.example",
            governance_address=f.address,
            data_public_key=f.data_key,
            role=1,
        )
        services.demo_keystore_save(address=f.address, private_key=f.key)
    chain_sync_run()
    yield founders
    portal_chain.use_client(None)


@dataclass
class Applicant:
    name: str
    key: str
    address: str
    data_key: str


@pytest.fixture
def applicant_keys() -> Applicant:
    key = _key(0x2000)
    return Applicant(
        name="Harbour Hospital",
        key=key,
        address=Account.from_key(key).address,
        data_key="0x" + "ab" * 32,
    )


def sign_application(applicant: Applicant, role: int = 1) -> str:
    from chain import eip712
    from portal.consortium import services

    typed = services.application_typed_data(
        governance_address=applicant.address,
        role=role,
        data_public_key=applicant.data_key,
        name=applicant.name,
    )
    return "0x" + eip712.sign_typed(applicant.key, typed).hex()


@pytest.fixture
def applicant(consortium, applicant_keys):
    """An applicant hospital (not a member) whose admin account exists: the outsider persona."""
    from portal.consortium import services

    return services.application_submit(
        name=applicant_keys.name,
        contact_email="admin@harbour.example",
        governance_address=applicant_keys.address,
        data_public_key=applicant_keys.data_key,
        signature=sign_application(applicant_keys),
        admin_username="harbour-admin",
        admin_password="harbour-pass-123",
    )


def _founder_staff(founder: Founder, username: str, password: str, email: str, role: str) -> Any:
    """A login of a founding hospital, created as its admin would (``staff_create``)."""
    from portal.consortium import services
    from portal.consortium.models import Member

    member = Member.objects.get(governance_address=founder.address)
    return services.staff_create(
        member=member, username=username, password=password, email=email, role=role
    ).user


@pytest.fixture
def member_admin(consortium):
    """The admin of the first founding hospital."""
    from portal.consortium.models import Staff

    return _founder_staff(
        consortium[0], "mary-admin", "mary-pass-123", "admin@mary.example", Staff.Role.ADMIN
    )


@pytest.fixture
def second_admin(consortium):
    from portal.consortium.models import Staff

    return _founder_staff(
        consortium[1], "city-admin", "city-pass-123", "admin@city.example", Staff.Role.ADMIN
    )


@pytest.fixture
def clinician(consortium):
    from portal.consortium.models import Staff

    return _founder_staff(
        consortium[0], "mary-clinician", "mary-pass-123", "doc@mary.example", Staff.Role.CLINICIAN
    )


@pytest.fixture
def outsider(applicant):
    """A signed-in user of a hospital that is not (yet) a member."""
    return applicant.staff.get().user


@pytest.fixture
def api_as() -> Callable[[Any], Any]:
    """`api_as(user)`: an API client acting as `user` (None: anonymous)."""
    from tests.factories import api_client

    return api_client


@pytest.fixture
def datasets_chain(consortium, chain_client, settings, tmp_path: Path):
    """The DatasetRegistry deployed against the consortium's registry; chunks stored under tmp."""
    from chain.dataset_registry import DatasetRegistry
    from portal.core import chain as portal_chain
    from portal.core.models import ContractDeployment

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    block = chain_client.head()
    registry = DatasetRegistry.deploy(
        chain_client, registry_address=portal_chain.deployment().address
    )
    ContractDeployment.objects.create(
        name="DatasetRegistry",
        chain_id=chain_client.chain_id,
        address=registry.address,
        block_number=block + 1,
    )
    return registry
