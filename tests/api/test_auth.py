from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils import timezone

from api.auth import authenticate, bearer_token, via
from api.base import ApiError
from api.models import ApiToken
from tests.api.api_support import make_user

pytestmark = pytest.mark.django_db


def request_with(header: str | None = None, method: str = "get"):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    request = getattr(RequestFactory(), method)("/health/recover", **extra)
    request.user = AnonymousUser()
    return request


def test_it_stores_only_the_hash_of_an_issued_token():
    row, token = ApiToken.issue(make_user(), name="ci")
    assert token.startswith("ops_") and len(token) > 40
    stored = ApiToken.objects.get(pk=row.pk)
    assert stored.token_hash == ApiToken.hash(token) != token
    assert token not in str(stored.__dict__.values())
    assert stored.prefix == token[:10]


def test_it_authenticates_a_live_token_and_refuses_the_rest():
    row, token = ApiToken.issue(make_user())
    assert ApiToken.authenticate(token) == row
    assert ApiToken.authenticate(token + "x") is None
    assert ApiToken.authenticate("") is None
    row.revoke()
    assert row.is_revoked
    assert ApiToken.authenticate(token) is None


def test_it_refuses_the_token_of_an_inactive_user():
    user = make_user()
    _, token = ApiToken.issue(user)
    user.is_active = False
    user.save()
    assert ApiToken.authenticate(token) is None


def test_it_records_use_at_most_once_a_minute():
    row, _ = ApiToken.issue(make_user())
    start = timezone.now()
    row.touch(start)
    assert ApiToken.objects.get().last_used_at == start
    row.touch(start + timedelta(seconds=30))
    assert ApiToken.objects.get().last_used_at == start
    later = start + timedelta(seconds=61)
    row.touch(later)
    assert ApiToken.objects.get().last_used_at == later


def test_it_sets_the_api_user_and_token_on_the_request():
    user = make_user()
    row, token = ApiToken.issue(user, name="deploy")
    request = request_with(f"Bearer {token}", "post")
    authenticate(request, staff=True)
    assert request.api_user == user
    assert request.api_token == row
    assert via(request) == f"api token {row.prefix}… deploy"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer    ", "Token abc"])
def test_it_refuses_a_malformed_authorization_header_with_401(header):
    with pytest.raises(ApiError) as caught:
        bearer_token(request_with(header))
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_it_accepts_the_bearer_scheme_in_any_case():
    assert bearer_token(request_with("bearer abc")) == "abc"
    assert bearer_token(request_with(None)) is None


def test_it_lets_a_non_staff_token_read_but_not_act():
    _, token = ApiToken.issue(make_user(staff=False))
    authenticate(request_with(f"Bearer {token}"), staff=False)
    with pytest.raises(ApiError) as caught:
        authenticate(request_with(f"Bearer {token}", "post"), staff=True)
    assert caught.value.status == 403


def test_it_asks_an_anonymous_request_to_authenticate():
    with pytest.raises(ApiError) as caught:
        authenticate(request_with(None), staff=False)
    assert caught.value.status == 401
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="opsportal"'}
