from __future__ import annotations

from django.apps import AppConfig


class OpsportalConfig(AppConfig):
    name = "opsportal"
    verbose_name = "opsportal"

    def ready(self) -> None:
        # Here, not at the top: apps.py is imported before the models are; these modules import models.
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_login_failed

        from opsportal.login_throttle import on_locked_out, on_login_failed

        # Failed logins and lockouts go to system-monitor.log (without the password).
        user_login_failed.connect(on_login_failed, dispatch_uid="opsportal-login-failed")
        user_locked_out.connect(on_locked_out, dispatch_uid="opsportal-login-locked-out")
