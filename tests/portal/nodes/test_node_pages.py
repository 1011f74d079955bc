from __future__ import annotations

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_it_shows_the_members_nodes_online_or_offline(client, clinician, node):
    client.force_login(clinician)
    page = client.get("/nodes/")
    assert page.status_code == 200
    assert "mary-1" in page.text and "offline" in page.text
    node.last_check_in = timezone.now()
    node.save()
    assert "online" in client.get("/nodes/").text


def test_it_shows_no_other_members_nodes(client, outsider, node):
    from portal.consortium import services
    from portal.consortium.models import Staff

    doctor = services.staff_create(
        member=outsider.staff.member,
        username="harbour-doc",
        password="harbour-pass-123",
        email="doc@harbour.example",
        role=Staff.Role.CLINICIAN,
    )
    client.force_login(doctor.user)
    page = client.get("/nodes/")
    assert page.status_code == 200
    assert "mary-1" not in page.text


def test_it_refuses_token_issue_to_non_admins(client, clinician, node):
    client.force_login(clinician)
    response = client.post(f"/nodes/{node.node_id}/token/", follow=True)
    assert "Only your member" in response.text
    node.refresh_from_db()
    assert node.user is None


def test_it_sends_anonymous_visitors_to_sign_in(client):
    response = client.get("/nodes/")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_replacing_a_token_asks_first_and_names_the_consequence(client, member_admin, node):
    from portal.nodes import services
    from tests.factories import verified_login

    verified_login(client, member_admin)
    first = client.get("/nodes/").text
    assert "Issue token" in first and "data-confirm=" not in first  # nothing to lose yet

    services.node_token_issue(node=node)
    page = client.get("/nodes/").text

    assert "Replace token" in page
    assert "stops working at once" in page and 'data-confirm-action="Replace the token"' in page
    assert "/static/js/confirm.js" in page
