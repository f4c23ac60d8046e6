"""A private redis-server on a free loopback port, in a temporary directory, and test certificates for TLS.

The machine's Redis (127.0.0.1:6379) is shared, so what a test must configure (maxmemory, a password, TLS)
gets its own server, started as a real subprocess and stopped after the test.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port, wait_for

REDIS_SERVER = shutil.which("redis-server")


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path, days: int = 30, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certs:
    """A CA and a server certificate it signed, for `names` (host names and IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opsportal test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([_san(name) for name in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certs


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class RedisServer:
    """`redis-server` on 127.0.0.1 and a free port, no persistence, its files in `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        maxmemory: str = "0",
        password: str | None = None,
        certs: Certs | None = None,
    ) -> None:
        assert REDIS_SERVER, "redis-server is not installed"
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.tls = certs is not None
        args = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--databases", "16",
            "--maxmemory", maxmemory,
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        if password is not None:
            args += ["--requirepass", password]
        if certs is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(certs.cert),
                "--tls-key-file", str(certs.key),
                "--tls-ca-cert-file", str(certs.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        self.certs = certs
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        extra = {"ssl": True, "ssl_ca_certs": str(self.certs.ca)} if self.certs else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1, **extra)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            log = self.directory / "redis.log"
            raise RuntimeError(f"redis-server exited: {log.read_text() if log.exists() else ''}")
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def start(self) -> RedisServer:
        if not wait_for(self.ready, timeout=10):
            self.stop()
            raise RuntimeError("redis-server did not answer within 10 s")
        return self

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
