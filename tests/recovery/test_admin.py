from __future__ import annotations

import pytest

from recovery.models import RecoveryAttempt, RecoveryState
from tests.recovery.conftest import touch_argv


@pytest.fixture
def admin_client_(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password=None)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_it_lists_attempts_read_only_and_recovers_from_the_state_list(
    admin_client_, flag_target, make_service, add_action
):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    state = RecoveryState.for_service(svc)

    response = admin_client_.post(
        "/admin/recovery/recoverystate/", {"action": "recover_now", "_selected_action": [state.pk]}, follow=True
    )

    assert response.status_code == 200
    attempt = RecoveryAttempt.objects.get()
    assert attempt.outcome == "succeeded" and attempt.requested_via == "admin" and attempt.trigger == "manual"
    shown = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("web: succeeded") for m in shown), shown
    assert admin_client_.get("/admin/recovery/recoveryattempt/").status_code == 200
    assert admin_client_.get("/admin/recovery/recoveryattempt/add/").status_code == 403
    page = admin_client_.get(f"/admin/recovery/recoveryattempt/{attempt.pk}/change/")
    assert page.status_code == 200 and b'name="outcome"' not in page.content  # view only
