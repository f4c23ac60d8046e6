"""Certificates made in the test (a CA and its leaves, by `cryptography`) and loopback TLS servers.

`TlsServer` accepts on 127.0.0.1, optionally speaks a STARTTLS preamble (smtp, imap, postgres), then
completes a server-side handshake with the leaf it was given. `https_server` makes a `tests.servers`
HttpServer speak HTTPS with such a leaf.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import HttpServer, LoopbackTcpServer


@dataclass
class Pem:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    pem = Pem(directory / f"{stem}.crt", directory / f"{stem}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem


class Authority:
    """A CA made now, valid a year; `leaf()` issues server certificates ending when asked."""

    def __init__(self, directory: Path, cn: str = "opsportal test CA") -> None:
        self.directory = directory
        self.cn = cn
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(directory, "ca", self.cert, self.key)

    def leaf(self, stem: str, *, days: float, cn: str = "localhost", names: tuple[str, ...] = ("localhost",)) -> Pem:
        """A server certificate for `names` (and 127.0.0.1) that ends `days` from now (negative: already ended)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_after = now + dt.timedelta(days=days)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - dt.timedelta(days=30))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.directory, stem, cert, key)


def server_context(leaf: Pem) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    return ctx


class TlsServer(LoopbackTcpServer):
    """A loopback TLS server: accepts, speaks the STARTTLS preamble if any, handshakes, then closes.

    `starttls_offered = False` makes the SMTP server leave STARTTLS out of its EHLO answer;
    `silent = True` accepts and never answers (a hung handshake).
    """

    def __init__(self, leaf: Pem, *, starttls: str | None = None, silent: bool = False) -> None:
        super().__init__()
        self.ctx = server_context(leaf)
        self.starttls = starttls
        self.starttls_offered = True
        self.silent = silent
        self.handshakes = 0

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.silent:
                self._stop.wait(30)
                return
            reader = conn.makefile("rb")
            if self.starttls == "smtp":
                conn.sendall(b"220 mail.test ESMTP ready\r\n")
                reader.readline()  # EHLO
                extra = b"250-STARTTLS\r\n" if self.starttls_offered else b""
                conn.sendall(b"250-mail.test\r\n" + extra + b"250 8BITMIME\r\n")
                if not self.starttls_offered:
                    return
                reader.readline()  # STARTTLS
                conn.sendall(b"220 go ahead\r\n")
            elif self.starttls == "imap":
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
                tag = reader.readline().split(b" ", 1)[0]
                conn.sendall(tag + b" OK begin TLS now\r\n")
            elif self.starttls == "postgres":
                conn.recv(8)  # SSLRequest
                conn.sendall(b"S")
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                tls.settimeout(1)
                with contextlib.suppress(OSError, ssl.SSLError):
                    tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError):
            pass  # the client refused our certificate: its side of the test says so
        finally:
            conn.close()


def https_server(leaf: Pem) -> HttpServer:
    """A started tests.servers.HttpServer that speaks HTTPS with `leaf` (its url: https://127.0.0.1:PORT)."""
    server = HttpServer()
    server.httpd.socket = server_context(leaf).wrap_socket(server.httpd.socket, server_side=True)
    server.url = f"https://127.0.0.1:{server.port}"
    return server.start()
