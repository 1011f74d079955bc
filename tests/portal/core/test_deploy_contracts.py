from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chain.deployment import DeploymentRecord
from portal.consortium.models import Member
from portal.core import chain as portal_chain
from portal.core.models import ContractDeployment

pytestmark = pytest.mark.django_db

FOUNDER = "St. Mary's Hospital,0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf," + "0x" + "11" * 32


@pytest.fixture
def on_test_chain(chain_client, settings, tmp_path):
    settings.CHAIN_DEPLOYMENT_RECORD = tmp_path / "chain-deployment.json"
    portal_chain.use_client(chain_client)
    yield chain_client
    portal_chain.use_client(None)


def test_it_deploys_both_registries_and_records_them(on_test_chain, settings):
    out = StringIO()
    call_command("deploy_contracts", "--founder", FOUNDER, stdout=out)
    names = set(ContractDeployment.objects.values_list("name", flat=True))
    assert names == {portal_chain.REGISTRY, portal_chain.DATASETS}
    assert portal_chain.registry().member_count() == 1
    assert portal_chain.datasets().registry_address() == portal_chain.registry().address
    assert Member.objects.get().founding
    # The record hospitals pin on their nodes and uploaders.
    record = DeploymentRecord.load(settings.CHAIN_DEPLOYMENT_RECORD)
    assert record == DeploymentRecord(
        chain_id=on_test_chain.chain_id,
        registry=portal_chain.registry().address,
        datasets=portal_chain.datasets().address,
    )


def test_it_adds_a_dataset_registry_beside_an_older_deployment(on_test_chain):
    call_command("deploy_contracts", "--founder", FOUNDER, stdout=StringIO())
    ContractDeployment.objects.filter(name=portal_chain.DATASETS).delete()
    registry_before = portal_chain.deployment().address
    out = StringIO()
    call_command("deploy_contracts", "--founder", FOUNDER, stdout=out)
    assert "already deployed" in out.getvalue() and "DatasetRegistry at" in out.getvalue()
    assert portal_chain.deployment().address == registry_before
    assert portal_chain.datasets().registry_address() == registry_before


def test_it_refuses_a_malformed_founder_in_one_line(on_test_chain):
    with pytest.raises(CommandError, match="NAME,ADDRESS,DATA_KEY"):
        call_command("deploy_contracts", "--founder", "just-a-name", stdout=StringIO())
