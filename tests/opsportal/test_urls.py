"""The project's URLs: of django.contrib.auth's views only login, logout and password change are published;
the password-reset views (there is no mail to send a reset with) answer 404."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

PASSWORD = "urls-test-password-61ca"

RESET_PATHS = [
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/MQ/set-password/",
    "/accounts/reset/done/",
]


@pytest.mark.parametrize("path", RESET_PATHS)
def test_it_does_not_publish_the_password_reset_views(db, path):
    assert Client().get(path).status_code == 404
    assert Client().post(path, {"email": "root@example.invalid"}).status_code == 404


def test_it_keeps_login_logout_and_password_change(db):
    user = get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    client = Client()
    assert client.get(reverse("login")).status_code == 200
    assert client.post(reverse("login"), {"username": "ops", "password": PASSWORD}).status_code == 302
    assert client.get(reverse("password_change")).status_code == 200
    assert client.get(reverse("password_change_done")).status_code == 200
    assert client.post(reverse("logout")).status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
