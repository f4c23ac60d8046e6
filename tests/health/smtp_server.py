"""A loopback SMTP server for tests (aiosmtpd in a thread), optionally offering STARTTLS."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from aiosmtpd.controller import Controller

from tests.health.redis_server import Certs
from tests.servers import free_port

SERVER_NAME = "mx.opsportal.test"
IDENT = "opsportal-test ESMTP"


class Sink:
    """Accepts every message and drops it (the probe sends none)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


@contextlib.contextmanager
def smtp_server(certs: Certs | None = None) -> Iterator[Controller]:
    """An SMTP server on 127.0.0.1 and a free port; with `certs`, it offers STARTTLS with them."""
    kwargs: dict[str, object] = {}
    if certs is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certs.cert), str(certs.key))
        kwargs["tls_context"] = context
    controller = Controller(
        Sink(), hostname="127.0.0.1", port=free_port(), server_hostname=SERVER_NAME, ident=IDENT, **kwargs
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
