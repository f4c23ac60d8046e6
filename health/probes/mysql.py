"""The `mysql` probe (MySQL and MariaDB, through PyMySQL): connect and run a query."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql

from core.spec import ConfigError, Key, env_value, scrub
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

SCHEMES = ("mysql", "mariadb")
# The DSN query parameters understood (all optional).
PARAMS = ("unix_socket", "charset")


@dataclass
class Dsn:
    host: str
    port: int
    user: str
    password: str | None
    database: str | None
    unix_socket: str | None
    charset: str

    @property
    def where(self) -> str:
        place = self.unix_socket or f"{self.host}:{self.port}"
        return f"{place}/{self.database or ''}"


def parse_dsn(dsn: str) -> Dsn:
    """`mysql://user:password@host:port/database?unix_socket=/path&charset=utf8mb4`.

    A ConfigError says what is wrong, never quoting the DSN."""
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError("", f"bad DSN: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError("", "the DSN must start with mysql:// (mysql://user:password@host:port/database)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(PARAMS))
    if unknown:
        raise ConfigError("", f"unknown DSN parameter {unknown[0]!r} (known: {', '.join(PARAMS)})")
    if not parts.username:
        raise ConfigError("", "the DSN names no user (mysql://user:password@host:port/database)")
    path = unquote(parts.path.lstrip("/"))
    return Dsn(
        host=parts.hostname or "localhost",
        port=port or 3306,
        user=unquote(parts.username),
        password=unquote(parts.password) if parts.password is not None else None,
        database=path or None,
        unix_socket=query.get("unix_socket", [None])[-1] or None,
        charset=query.get("charset", ["utf8mb4"])[-1] or "utf8mb4",
    )


class MysqlProbe(Probe):
    """Connects to a MySQL or MariaDB server whose DSN is in an environment variable and runs a query."""

    keys = {
        "dsn_env": Key("str", required=True, help="name of the variable holding mysql://user:password@host:port/db"),
        "password_env": Key("str", help="name of the variable holding the password (instead of the DSN's)"),
        "query": Key("str", default="SELECT 1"),
    }

    def _dsn(self) -> Dsn:
        try:
            # env_value registers the DSN's password (raw and decoded) before the parse can quote it.
            dsn = parse_dsn(env_value(self.cfg["dsn_env"], self.secrets))
            if self.cfg["password_env"]:
                dsn.password = env_value(self.cfg["password_env"], self.secrets)
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {scrub(str(exc), self.secrets)}") from None
        if dsn.password:
            self.secrets.append(dsn.password)
        return dsn

    def run(self) -> ProbeOutcome:
        dsn = self._dsn()
        where = f"mysql {dsn.where}"
        start = time.perf_counter()
        try:
            conn = pymysql.connect(
                host=dsn.host,
                port=dsn.port,
                user=dsn.user,
                password=dsn.password or "",
                database=dsn.database,
                unix_socket=dsn.unix_socket,
                charset=dsn.charset,
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                write_timeout=self.timeout,
            )
            try:
                with conn.cursor() as cursor:
                    self._limit_statement_time(conn, cursor, start)
                    cursor.execute(self.cfg["query"])
                    cursor.fetchone()
                # MariaDB prefixes "5.5.5-" for old MySQL clients: not its version.
                server = conn.get_server_info().removeprefix("5.5.5-")
            finally:
                conn.close()
        except pymysql.MySQLError as exc:
            raise self._error(where, exc) from None
        latency = (time.perf_counter() - start) * 1000
        return ProbeOutcome(UP, latency, f"{where} answered ({server})")

    def _limit_statement_time(self, conn: pymysql.connections.Connection, cursor: Any, start: float) -> None:
        """Ask the server to stop the query before the timeout, so it stops working and says why; the client's
        read timeout (the whole timeout) is the backstop. 80% of what is left after connecting."""
        left = max(0.05, (self.timeout - (time.perf_counter() - start)) * 0.8)
        if "mariadb" in conn.get_server_info().lower():
            statement = f"SET SESSION max_statement_time = {left:.3f}"
        else:  # MySQL: milliseconds, SELECT only
            statement = f"SET SESSION max_execution_time = {max(1, int(left * 1000))}"
        # An old or unusual server may refuse it: the read timeout still bounds the probe.
        with contextlib.suppress(pymysql.MySQLError):
            cursor.execute(statement)

    def _error(self, where: str, exc: pymysql.MySQLError) -> ProbeError:
        code, message = (exc.args + ("", ""))[:2] if exc.args else ("", "")
        text = scrub(str(message or type(exc).__name__), self.secrets).strip()
        first = text.splitlines()[0][:200] if text else type(exc).__name__
        label = f"{where}: ({code}) {first}" if code else f"{where}: {first}"
        if "timed out" in text or code in (1969, 3024):  # 1969 MariaDB, 3024 MySQL: statement time exceeded
            return ProbeTimeout(label)
        return ProbeError(label)
