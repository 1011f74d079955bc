from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account

from chain import eip712
from portal.nodes.agent.keystore import NodeKeystore
from tests.node_keys import node_keystore

NODE_PASSWORD = "node-pass"

pytestmark = pytest.mark.django_db

LIST = "/api/v1/nodes/"
REGISTER = "/api/v1/nodes/register/"
TYPED = "/api/v1/nodes/register/typed-data/"
CHALLENGE = "/api/v1/nodes/check-in/challenge/"
CHECK_IN = "/api/v1/nodes/check-in/"


def _token_url(node_id: str) -> str:
    return f"/api/v1/nodes/{node_id}/token/"


def _registration(keys: NodeKeystore) -> dict[str, str]:
    return {
        "node_id": keys.identity.node_id,
        "signer_address": keys.identity.signer_address,
        "data_public_key": keys.identity.data_public_key,
        "label": "mary-2",
    }


def _assert_json_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"]


def test_it_lists_the_members_own_nodes(member_admin, clinician, node, api_as):
    for user in (member_admin, clinician):
        response = api_as(user).get(LIST)
        assert response.status_code == 200
        assert [n["node_id"] for n in response.json()["results"]] == [node.node_id]
        assert response.json()["results"][0]["online"] is False


def test_it_hides_other_members_nodes(second_admin, node, api_as):
    response = api_as(second_admin).get(LIST)
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_it_refuses_the_outsider_and_anonymous(outsider, node, api_as):
    _assert_json_error(api_as(outsider).get(LIST), 403, "consortium member")
    assert api_as(None).get(LIST).status_code == 401


def test_it_registers_a_node_signed_by_the_demo_keystore(member_admin, node_keys, api_as):
    from portal.nodes.models import Node

    payload = {**_registration(node_keys), "demo_keystore": True}
    response = api_as(member_admin).post(REGISTER, payload, format="json")
    assert response.status_code == 201, response.content
    node = Node.objects.get(node_id=node_keys.identity.node_id)
    assert node.signer_address == node_keys.identity.signer_address
    assert node.member.governance_address == member_admin.staff.member.governance_address
    assert node.label == "mary-2"


def test_it_registers_a_node_with_a_wallet_signature(member_admin, consortium, node_keys, api_as):
    typed = api_as(member_admin).post(TYPED, _registration(node_keys), format="json")
    assert typed.status_code == 200, typed.content
    signature = eip712.sign_typed(consortium[0].key, typed.json())
    payload = {**_registration(node_keys), "signature": "0x" + signature.hex()}
    response = api_as(member_admin).post(REGISTER, payload, format="json")
    assert response.status_code == 201, response.content


def test_it_refuses_a_registration_signed_by_someone_else(member_admin, node_keys, api_as):
    typed = api_as(member_admin).post(TYPED, _registration(node_keys), format="json").json()
    forged = eip712.sign_typed(Account.create().key.hex(), typed)
    payload = {**_registration(node_keys), "signature": "0x" + forged.hex()}
    response = api_as(member_admin).post(REGISTER, payload, format="json")
    _assert_json_error(response, 400, "governance address")


def test_it_refuses_registration_by_non_admins(clinician, outsider, node_keys, api_as):
    for user in (clinician, outsider):
        response = api_as(user).post(REGISTER, _registration(node_keys), format="json")
        _assert_json_error(response, 403, "admin")
        response = api_as(user).post(TYPED, _registration(node_keys), format="json")
        _assert_json_error(response, 403, "admin")


def test_it_explains_invalid_registration_input(member_admin, node_keys, api_as):
    payload = {**_registration(node_keys), "signer_address": "0x1234"}
    response = api_as(member_admin).post(REGISTER, payload, format="json")
    _assert_json_error(response, 400, "signer_address", "40 hex digits")
    response = api_as(member_admin).post(TYPED, {"node_id": "nope"}, format="json")
    _assert_json_error(response, 400, "node_id")


def test_it_issues_a_node_token_once_per_request(member_admin, node, api_as):
    first = api_as(member_admin).post(_token_url(node.node_id))
    assert first.status_code == 201
    second = api_as(member_admin).post(_token_url(node.node_id))
    assert second.json()["token"] != first.json()["token"]
    from portal.core.models import ApiToken
    from portal.core.tokens import key_hash

    node.refresh_from_db()
    assert list(ApiToken.objects.filter(user=node.user).values_list("key_hash", "kind")) == [
        (key_hash(second.json()["token"]), "node")
    ]


def test_it_refuses_tokens_for_other_members_nodes(second_admin, outsider, clinician, node, api_as):
    _assert_json_error(api_as(second_admin).post(_token_url(node.node_id)), 404, "no node")
    _assert_json_error(api_as(outsider).post(_token_url(node.node_id)), 403)
    _assert_json_error(api_as(clinician).post(_token_url(node.node_id)), 403)


def test_it_checks_a_node_in_with_its_registered_key(node, node_api, node_keys):
    challenge = node_api.post(CHALLENGE)
    assert challenge.status_code == 201, challenge.content
    data = challenge.json()
    assert data["node_id"] == node.node_id
    signature = node_keys.sign_check_in(
        chain_id=data["chain_id"], registry=data["registry"], challenge=data["challenge"]
    )
    response = node_api.post(
        CHECK_IN, {"challenge": data["challenge"], "signature": signature}, format="json"
    )
    assert response.status_code == 200, response.content
    node.refresh_from_db()
    assert node.last_check_in is not None and node.is_online


def test_it_refuses_a_replayed_challenge(node_api, node_keys):
    data = node_api.post(CHALLENGE).json()
    signature = node_keys.sign_check_in(
        chain_id=data["chain_id"], registry=data["registry"], challenge=data["challenge"]
    )
    payload = {"challenge": data["challenge"], "signature": signature}
    assert node_api.post(CHECK_IN, payload, format="json").status_code == 200
    _assert_json_error(node_api.post(CHECK_IN, payload, format="json"), 400, "already used")


def test_it_refuses_an_expired_challenge(node, node_api, node_keys):
    data = node_api.post(CHALLENGE).json()
    node.challenges.update(expires_at=timezone.now() - timedelta(seconds=1))
    signature = node_keys.sign_check_in(
        chain_id=data["chain_id"], registry=data["registry"], challenge=data["challenge"]
    )
    payload = {"challenge": data["challenge"], "signature": signature}
    _assert_json_error(node_api.post(CHECK_IN, payload, format="json"), 400, "expired")


def test_it_refuses_a_check_in_signed_by_another_key(node, node_api, tmp_path):
    other = node_keystore(tmp_path / "other", NODE_PASSWORD, template="other-node")
    data = node_api.post(CHALLENGE).json()
    typed = eip712.typed_for(
        "NodeCheckIn",
        chain_id=data["chain_id"],
        contract=data["registry"],
        node_id=node.node_id,
        challenge=data["challenge"],
    )
    forged = "0x" + eip712.sign_typed(Account.create().key.hex(), typed).hex()
    payload = {"challenge": data["challenge"], "signature": forged}
    _assert_json_error(node_api.post(CHECK_IN, payload, format="json"), 400, "registered signer")
    # A valid signature over another node's id does not pass for this node either.
    wrong = other.sign_check_in(
        chain_id=data["chain_id"], registry=data["registry"], challenge=data["challenge"]
    )
    payload = {"challenge": data["challenge"], "signature": wrong}
    _assert_json_error(node_api.post(CHECK_IN, payload, format="json"), 400, "registered signer")
    node.refresh_from_db()
    assert node.last_check_in is None


def test_it_explains_invalid_check_in_input(node_api):
    response = node_api.post(CHECK_IN, {"challenge": "0x12", "signature": "zz"}, format="json")
    _assert_json_error(response, 400, "challenge")


def test_it_keeps_check_in_routes_for_node_tokens(member_admin, outsider, node, api_as):
    for user in (member_admin, outsider):
        _assert_json_error(api_as(user).post(CHALLENGE), 403, "node")
        _assert_json_error(api_as(user).post(CHECK_IN, {}, format="json"), 403, "node")
    assert api_as(None).post(CHALLENGE).status_code == 401


def test_it_refuses_a_password_only_admin_session_a_node_token(member_admin, node, node_api):
    from django.test import Client

    from portal.core.models import ApiToken

    before = ApiToken.objects.get(user=node.user).key_hash
    session = Client()
    session.force_login(member_admin)  # the password, never the TOTP code

    response = session.post(f"/api/v1/nodes/{node.node_id}/token/")

    assert response.status_code == 403
    assert response.json()["code"] == "second_factor_required"
    assert ApiToken.objects.get(user=node.user).key_hash == before
