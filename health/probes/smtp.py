"""The `smtp` probe: the server's 220 banner, EHLO, and optionally STARTTLS with a certificate check."""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
import time
from typing import Any

from core.spec import ConfigError, Key
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

SHOWN = 200


def check_tls(cfg: dict[str, Any], where: str) -> None:
    """`verify_tls` and `ca_file` only mean something with `starttls = true`, and `ca_file` only when verifying."""
    if not cfg.get("starttls"):
        for name in ("verify_tls", "ca_file"):
            if cfg.get(name) is not None:
                raise ConfigError(f"{where}.{name}", "applies only with starttls = true")
    if cfg.get("ca_file") is not None and cfg.get("verify_tls") is False:
        raise ConfigError(f"{where}.ca_file", "is not used with verify_tls = false (remove one of them)")


def _text(message: bytes | str) -> str:
    text = message.decode("utf-8", errors="replace") if isinstance(message, bytes) else str(message)
    text = " ".join(text.split())
    return text[:SHOWN] + ("…" if len(text) > SHOWN else "")


def _quit(client: smtplib.SMTP, timeout: float) -> None:
    """Say QUIT, as a polite client does; the verdict is already made, so no answer (or an error) changes it."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        if client.sock is not None:
            client.sock.settimeout(timeout)
        client.quit()


class _Client(smtplib.SMTP):
    """smtplib's client, keeping the banner (its constructor reads and drops it; `connect()` alone leaves
    the host name STARTTLS checks the certificate against unset)."""

    banner: tuple[int, bytes] = (0, b"")

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> tuple[int, bytes]:
        self.banner = super().connect(host, port, source_address)
        return self.banner


class SmtpProbe(Probe):
    """Reads the SMTP banner (220) and says EHLO; with `starttls`, upgrades to TLS and says EHLO again."""

    keys = {
        "host": Key("str", required=True),
        "port": Key("int", default=25, minimum=1, maximum=65535),
        "starttls": Key("bool", default=False),
        # No default in the Key (unset means true), so a verify_tls given without starttls is refused by name.
        "verify_tls": Key("bool", help="with starttls: check the certificate and the host name (default true)"),
        "ca_file": Key("str", help="with starttls: CA bundle to trust (default the system's, honouring SSL_CERT_FILE)"),
        "helo": Key("str", help="the name said in EHLO (default this host's name)"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_tls(cleaned, where)
        return cleaned

    def _context(self) -> ssl.SSLContext:
        cfg = self.cfg
        if cfg["verify_tls"] is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if cfg["ca_file"] and not os.access(cfg["ca_file"], os.R_OK):
            raise ProbeConfigError(f"config error: settings.ca_file: cannot read {cfg['ca_file']}")
        try:
            return ssl.create_default_context(cafile=cfg["ca_file"])
        except (ssl.SSLError, OSError) as exc:
            raise ProbeConfigError(f"config error: settings.ca_file: not a CA bundle ({exc})") from None

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            check_tls(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        context = self._context() if cfg["starttls"] else None
        host, port = cfg["host"], cfg["port"]
        where = f"smtp {host}:{port}"
        start = time.perf_counter()
        # local_hostname given: smtplib's default, socket.getfqdn(), may wait on a DNS lookup.
        helo = cfg["helo"] or socket.gethostname() or "localhost"
        try:
            # Connects and reads the banner; anything but 220 is SMTPConnectError.
            client = _Client(host, port, timeout=self.timeout, local_hostname=helo)
            try:
                code, banner = client.banner
                detail = f"{where}: {code} {_text(banner)}"
                code, answer = client.ehlo()
                if code != 250:
                    raise ProbeError(f"{where}: EHLO answered {code} {_text(answer)} (banner {_text(banner)})")
                if context is not None:
                    detail += self._starttls(client, context, where)
                latency = (time.perf_counter() - start) * 1000
                _quit(client, min(1.0, self.timeout))
            finally:
                client.close()
        except smtplib.SMTPConnectError as exc:
            raise ProbeError(f"{where}: refused with {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):  # smtplib turns a read timeout into a disconnect
                raise ProbeTimeout(f"{where}: no answer within {self.timeout:g} s") from None
            raise ProbeError(
                f"{where}: server closed the connection ({_text(str(exc)) or 'no reason given'})"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise ProbeError(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except ssl.SSLCertVerificationError as exc:
            raise ProbeError(f"{where}: TLS certificate not trusted: {exc.verify_message or exc.reason}") from None
        except ssl.SSLError as exc:
            raise ProbeError(f"{where}: TLS error: {exc.reason or exc}") from None
        except TimeoutError:
            raise ProbeTimeout(f"{where}: no answer within {self.timeout:g} s") from None
        except (OSError, smtplib.SMTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ProbeError(f"{where}: connection failed: {reason}") from None
        return ProbeOutcome(UP, latency, detail)

    def _starttls(self, client: smtplib.SMTP, context: ssl.SSLContext, where: str) -> str:
        if not client.has_extn("starttls"):
            raise ProbeError(f"{where}: the server does not offer STARTTLS")
        code, answer = client.starttls(context=context)  # raises SMTPResponseException unless 220
        code, answer = client.ehlo()
        if code != 250:
            raise ProbeError(f"{where}: EHLO after STARTTLS answered {code} {_text(answer)}")
        sock = client.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        return f"; STARTTLS ok ({version or 'TLS'})"
