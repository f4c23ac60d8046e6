"""The project's admin module: loaded last (opsportal is the last installed app), so it sees every action."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin


def guard_unchecked_actions(site: admin.AdminSite = admin.site) -> list[str]:
    """Give every registered admin action that declares no permissions `permissions=("change",)`.

    Django offers an action that declares none to anyone who may view the list (a view-only user could
    resubmit Django-Q2's tasks or clean django-axes' attempts). The portal's own actions declare theirs;
    this covers the libraries'. Called once every admin module is loaded: opsportal is the last installed
    app, so its admin module loads last; returns the actions it guarded, e.g. "django_q.Success.resubmit_task".
    """
    guarded = []
    for model, model_admin in site._registry.items():
        for func, name, _description in model_admin._get_base_actions():
            if not hasattr(func, "allowed_permissions"):
                target: Callable = getattr(func, "__func__", func)
                target.allowed_permissions = ("change",)  # type: ignore[attr-defined]
                guarded.append(f"{model._meta.label}.{name}")
    return guarded


guard_unchecked_actions(admin.site)
