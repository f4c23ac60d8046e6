"""Any TLS endpoint: handshake, trust, and how long its certificate has left.

Also the certificate helpers the `http` probe shares (`CERT_KEYS`, `check_cert_keys`, `read_cert`, `judge`).
"""

from __future__ import annotations

import datetime as dt
import os
import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from core.spec import ConfigError, Key
from health.probes.base import DEGRADED, DOWN, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

DAY = 86_400
# Enough for any banner, EHLO or IMAP greeting; a server that sends more before TLS is not speaking the protocol.
MAX_PREAMBLE = 16_384
STARTTLS = ("smtp", "imap", "postgres")
_PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# OpenSSL's reason codes a person meets most, said in words (the code stays, for a search).
_REASONS = {
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS there",
    "UNEXPECTED_EOF_WHILE_READING": "the peer closed the connection during the handshake",
}

CERT_KEYS = {
    "cert_warn_days": Key("int", default=14, maximum=3650, help="fewer days left: degraded; 0: off"),
    "cert_down_days": Key("int", default=0, maximum=3650, help="fewer days left: down; 0: off"),
    "ca_file": Key("str", help="absolute path of a PEM bundle to trust instead of the system's"),
}


def check_cert_keys(cfg: dict[str, Any], where: str) -> None:
    """The cross-key rules of the certificate keys (import time and run time)."""
    ca_file = cfg.get("ca_file")
    if ca_file and not os.path.isabs(ca_file):
        raise ConfigError(f"{where}.ca_file", "must be an absolute path")
    if ca_file and cfg.get("verify_tls") is False:
        raise ConfigError(f"{where}.ca_file", "has no use with verify_tls = false")
    warn, down = cfg.get("cert_warn_days", 14), cfg.get("cert_down_days", 0)
    if warn and down and down >= warn:
        raise ConfigError(f"{where}.cert_down_days", f"must be less than cert_warn_days ({warn})")


def ca_file_error(path: str | None) -> str | None:
    """Why a configured ca_file cannot be used here (None when it can, or none is configured)."""
    if path and not os.path.isfile(path):
        return f"config error: settings.ca_file: no such file {path}"
    return None


@dataclass
class CertInfo:
    subject: str
    issuer: str
    sans: list[str]
    not_after: dt.datetime

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).total_seconds()

    def days_left(self) -> int:
        # Rounded to the nearest day: a certificate issued for 5 days "expires in 5 days", not 4.
        return round(self.seconds_left() / DAY)

    def expiry(self) -> str:
        """`expires in 5 days (2026-12-06 14:21 UTC)` or `expired 3 days ago (…)`."""
        left = self.seconds_left()
        date = self.not_after.strftime("%Y-%m-%d %H:%M UTC")
        if abs(left) < DAY:
            hours = int(abs(left) // 3600)
            amount = f"{hours} hour{'s' if hours != 1 else ''}"
        else:
            days = abs(round(left / DAY))
            amount = f"{days} day{'s' if days != 1 else ''}"
        return f"expires in {amount} ({date})" if left > 0 else f"expired {amount} ago ({date})"

    def describe(self) -> str:
        sans = ", ".join(self.sans) or "none"
        return f"subject {self.subject}; issuer {self.issuer}; SANs {sans}"


def read_cert(der: bytes) -> CertInfo:
    """What a DER certificate says about itself (read without trusting it)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        sans = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        sans += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    return CertInfo(
        subject=cert.subject.rfc4514_string() or "(empty)",
        issuer=cert.issuer.rfc4514_string() or "(empty)",
        sans=sans,
        not_after=cert.not_valid_after_utc,
    )


def judge(info: CertInfo, warn_days: int, down_days: int) -> tuple[str, str]:
    """(status, text) by the thresholds. An expired certificate is always down, verified or not."""
    text = f"certificate {info.expiry()}"
    if info.seconds_left() <= 0:
        return DOWN, text
    days = info.days_left()
    if down_days and days < down_days:
        return DOWN, f"{text}, under cert_down_days {down_days}"
    if warn_days and days < warn_days:
        return DEGRADED, f"{text}, under cert_warn_days {warn_days}"
    return UP, text


class TlsProbe(Probe):
    """Connects, optionally speaks STARTTLS, completes a TLS handshake and judges the peer certificate."""

    keys = {
        "host": Key("str", required=True),
        "port": Key("int", required=True, minimum=1, maximum=65535),
        "server_name": Key("str", help="the name sent (SNI) and checked; default: host"),
        "verify_tls": Key("bool", default=True),
        "starttls": Key("str", choices=STARTTLS, help="speak this protocol's STARTTLS before the handshake"),
        **CERT_KEYS,
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_cert_keys(cleaned, where)
        return cleaned

    def _context(self, verify: bool) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            # Without cafile, the system store: OpenSSL's default paths, which honour SSL_CERT_FILE/SSL_CERT_DIR.
            return ssl.create_default_context(cafile=self.cfg["ca_file"])
        except (ssl.SSLError, OSError) as exc:
            raise ProbeConfigError(f"config error: settings.ca_file: not a usable PEM bundle ({exc})") from None

    def _remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeTimeout(f"no TLS handshake with {self._where()} within {self.timeout:g} s")
        return left

    def _where(self) -> str:
        return f"{self.cfg['host']}:{self.cfg['port']}"

    def _read_reply(self, sock: socket.socket, deadline: float, done: Any) -> str:
        """Lines of a plain-text reply until `done(lines)`, within the deadline and MAX_PREAMBLE bytes."""
        data = b""
        while True:
            lines = data.decode("latin-1").split("\r\n")
            complete = lines[:-1]
            if complete and done(complete):
                return "\n".join(complete)
            if len(data) > MAX_PREAMBLE:
                raise ProbeError(
                    f"{self.cfg['starttls']} server at {self._where()} sent more than {MAX_PREAMBLE} bytes"
                )
            sock.settimeout(self._remaining(deadline))
            chunk = sock.recv(4096)
            if not chunk:
                raise ProbeError(f"{self._where()} closed the connection before STARTTLS")
            data += chunk

    def _starttls(self, sock: socket.socket, deadline: float) -> None:
        mode = self.cfg["starttls"]

        def smtp_done(lines: list[str]) -> bool:
            return len(lines[-1]) < 4 or lines[-1][3] != "-"

        if mode == "smtp":
            banner = self._read_reply(sock, deadline, smtp_done)
            if not banner.startswith("220"):
                raise ProbeError(f"SMTP banner is not 220: {banner[:100]!r}")
            sock.sendall(b"EHLO localhost\r\n")
            ehlo = self._read_reply(sock, deadline, smtp_done)
            if not ehlo.startswith("250"):
                raise ProbeError(f"SMTP EHLO refused: {ehlo[:100]!r}")
            if not any(line[4:].upper().startswith("STARTTLS") for line in ehlo.split("\n")):
                raise ProbeError("SMTP server does not offer STARTTLS")
            sock.sendall(b"STARTTLS\r\n")
            answer = self._read_reply(sock, deadline, smtp_done)
            if not answer.startswith("220"):
                raise ProbeError(f"SMTP STARTTLS refused: {answer[:100]!r}")
        elif mode == "imap":
            greeting = self._read_reply(sock, deadline, lambda lines: True)
            if not greeting.startswith("* OK"):
                raise ProbeError(f"IMAP greeting is not OK: {greeting[:100]!r}")
            sock.sendall(b"a1 STARTTLS\r\n")
            answer = self._read_reply(sock, deadline, lambda lines: lines[-1].startswith("a1 "))
            if not answer.split("\n")[-1].upper().startswith("A1 OK"):
                raise ProbeError(f"IMAP STARTTLS refused: {answer[-100:]!r}")
        elif mode == "postgres":
            sock.sendall(_PG_SSL_REQUEST)
            sock.settimeout(self._remaining(deadline))
            answer = sock.recv(1)
            if answer != b"S":
                raise ProbeError(f"PostgreSQL server at {self._where()} refuses TLS (answered {answer!r})")

    def _handshake(self, ctx: ssl.SSLContext, server_name: str, deadline: float) -> bytes:
        """The peer's certificate (DER) after a handshake that ends by the deadline, whatever the server does."""
        host, port = self.cfg["host"], self.cfg["port"]
        raw = socket.create_connection((host, port), timeout=self._remaining(deadline))
        try:
            return self._after_connect(raw, ctx, server_name, deadline)
        except ConnectionError as exc:  # reset once connected: the handshake was refused, not the connect
            raise ProbeError(
                f"TLS handshake with {host}:{port} failed: the peer closed the connection during the handshake"
                f" ({exc.strerror or type(exc).__name__})"
            ) from None
        finally:
            raw.close()

    def _after_connect(self, raw: socket.socket, ctx: ssl.SSLContext, server_name: str, deadline: float) -> bytes:
        if self.cfg["starttls"]:
            self._starttls(raw, deadline)
        raw.setblocking(False)
        # A name that is an IP address is checked against the IP SANs and not sent as SNI.
        tls = ctx.wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    select.select([tls], [], [], self._remaining(deadline))
                except ssl.SSLWantWriteError:
                    select.select([], [tls], [], self._remaining(deadline))
            der = tls.getpeercert(binary_form=True)
        finally:
            tls.close()
        if not der:
            raise ProbeError(f"{self._where()} sent no certificate")
        return der

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            check_cert_keys(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        problem = ca_file_error(cfg["ca_file"])
        if problem:
            raise ProbeConfigError(problem)
        name = cfg["server_name"] or cfg["host"]
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        try:
            try:
                der = self._handshake(self._context(cfg["verify_tls"]), name, deadline)
            except ssl.SSLCertVerificationError as exc:
                reason = exc.verify_message or exc.reason or "verification failed"
                info, described = self._describe_anyway(name, deadline)
                raise ProbeError(
                    f"certificate not trusted ({reason}); {described}",
                    cert_expires_at=info.not_after if info else None,
                ) from None
        except ProbeError:
            raise
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            words = f"{_REASONS[reason]} ({reason})" if reason in _REASONS else reason
            raise ProbeError(f"TLS handshake with {self._where()} failed: {words}") from None
        except TimeoutError:
            raise ProbeTimeout(f"no TLS handshake with {self._where()} within {self.timeout:g} s") from None
        except OSError as exc:
            raise ProbeError(f"connect to {self._where()} failed: {exc.strerror or exc}") from None
        latency = (time.perf_counter() - start) * 1000
        info = read_cert(der)
        status, text = judge(info, cfg["cert_warn_days"], cfg["cert_down_days"])
        detail = f"{text}; {info.describe()}"
        if status == DOWN:
            raise ProbeError(detail, cert_expires_at=info.not_after)
        return ProbeOutcome(status, latency, detail, cert_expires_at=info.not_after)

    def _describe_anyway(self, name: str, deadline: float) -> tuple[CertInfo | None, str]:
        """The refused certificate (None when unreadable) and its expiry and names, read by a second
        handshake that does not verify."""
        try:
            info = read_cert(self._handshake(self._context(False), name, deadline))
        except (ProbeError, OSError, ValueError):
            return None, "certificate not readable"
        return info, f"certificate {info.expiry()}; {info.describe()}"
