from __future__ import annotations

import pytest
from eth_account import Account

from portal.consortium.delegates import delegate_set, delegate_typed_data
from portal.consortium.models import Delegate, Member
from portal.core import chain as portal_chain
from portal.core.apis import ServiceError
from tests.factories import wallet_sign

pytestmark = pytest.mark.django_db

DELEGATE = Account.from_key("0x" + "77" * 32).address


def _founder(consortium, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


def test_a_member_registers_a_data_delegate_with_its_wallet_and_can_disable_it(consortium):
    mary = _founder(consortium, 0)
    typed = delegate_typed_data(
        member=mary, address=DELEGATE, scope=Delegate.Scope.DATA, enabled=True
    )
    delegate = delegate_set(
        member=mary,
        address=DELEGATE,
        scope=Delegate.Scope.DATA,
        signature=wallet_sign(consortium[0].key, typed),
    )
    assert (delegate.member, delegate.scope, delegate.enabled) == (mary, Delegate.Scope.DATA, True)
    member_id, scope = portal_chain.registry().delegate_of(DELEGATE)
    assert (member_id, scope) == (mary.chain_member_id, Delegate.Scope.DATA)

    disabled = delegate_set(member=mary, address=DELEGATE, scope=Delegate.Scope.DATA, enabled=False)
    assert not disabled.enabled  # signed with the demo keystore this time
    assert portal_chain.registry().delegate_of(DELEGATE)[0] == 0


def test_it_refuses_a_signature_by_another_key(consortium):
    mary = _founder(consortium, 0)
    typed = delegate_typed_data(
        member=mary, address=DELEGATE, scope=Delegate.Scope.DATA, enabled=True
    )
    with pytest.raises(ServiceError, match="not by St. Mary's Hospital's governance address"):
        delegate_set(
            member=mary,
            address=DELEGATE,
            scope=Delegate.Scope.DATA,
            signature=wallet_sign(consortium[1].key, typed),
        )
    assert not Delegate.objects.exists()


def test_it_refuses_an_address_that_acts_for_another_member(consortium):
    delegate_set(member=_founder(consortium, 0), address=DELEGATE, scope=Delegate.Scope.DATA)
    with pytest.raises(ServiceError, match="already acts for another member"):
        delegate_set(member=_founder(consortium, 1), address=DELEGATE, scope=Delegate.Scope.DATA)


def test_it_refuses_to_disable_what_is_not_a_delegate(consortium):
    with pytest.raises(ServiceError, match="is not one of City General's delegates"):
        delegate_set(
            member=_founder(consortium, 1),
            address=DELEGATE,
            scope=Delegate.Scope.DATA,
            enabled=False,
        )
