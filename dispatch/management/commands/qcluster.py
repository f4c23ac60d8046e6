"""`qcluster`: Django-Q2's cluster, plus the resident probe dispatcher loop in its main process.

It replaces django_q's command of the same name (health comes first in INSTALLED_APPS). The loop
runs as long as the cluster (dispatch.scheduler.start_resident), so with several clusters a survivor
already carries every service when another dies; DISPATCH_RESIDENT=false leaves probing to the
every-minute fallback task.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QClusterCommand

from dispatch.scheduler import start_resident


class Command(QClusterCommand):
    help = "Starts a Django Q Cluster and, in its main process, the portal's probe dispatcher loop."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DISPATCH_RESIDENT or options.get("run_once"):
            return super().handle(*args, **options)
        cluster = self.start_cluster(options)

        def stopping() -> bool:
            # Cluster.sig_handler (SIGTERM/SIGINT) sets stop_event, then clears it once the sentinel has stopped.
            event = cluster.stop_event
            return event is None or event.is_set() or not cluster.sentinel.is_alive()

        loop = start_resident(stopping)
        # Wait here (signals still reach Cluster.sig_handler): exit once the loop has finished its pass
        # and released its claims.
        while loop.is_alive():
            loop.join(timeout=1.0)

    @staticmethod
    def start_cluster(options: dict[str, Any]) -> Cluster:
        """What django_q's handle does, keeping the Cluster so the loop can follow its stop event."""
        _ = settings.SECRET_KEY  # the cluster signs its tasks: fail now without a key
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        cluster.start()
        return cluster
