from __future__ import annotations

import pytest
from django.urls import reverse

from api.models import ApiToken


@pytest.fixture
def token(admin_user):
    row, clear = ApiToken.issue(admin_user, "ci")
    return row, clear


@pytest.mark.django_db
def test_it_does_not_offer_adding_a_token_in_the_admin(admin_client):
    response = admin_client.get(reverse("admin:api_apitoken_add"))
    assert response.status_code == 403


@pytest.mark.django_db
def test_it_revokes_selected_tokens_and_never_shows_the_hash(admin_client, token):
    row, clear = token
    changelist = admin_client.get(reverse("admin:api_apitoken_changelist"))
    assert row.token_hash not in changelist.content.decode()
    assert clear not in changelist.content.decode()
    response = admin_client.post(
        reverse("admin:api_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert ApiToken.authenticate(clear) is None
