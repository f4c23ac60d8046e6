from __future__ import annotations

import math
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.spec import ConfigError, Key, env_value, scrub
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome


class PostgresProbe(Probe):
    """Connects to a PostgreSQL server whose DSN is in an environment variable and runs SELECT 1."""

    keys = {
        "dsn_env": Key("str", required=True, help="name of the variable holding the DSN"),
        "password_env": Key("str", help="name of the variable holding the password"),
        "query": Key("str", default="SELECT 1"),
    }

    def run(self) -> ProbeOutcome:
        try:
            # env_value registers the DSN's password before the parse: a parse error quotes it (`pa%zz`).
            dsn = env_value(self.cfg["dsn_env"], self.secrets)
            extra: dict[str, str] = {}
            if self.cfg["password_env"]:
                extra["password"] = env_value(self.cfg["password_env"], self.secrets)
            params = conninfo_to_dict(dsn)
        except (ConfigError, psycopg.ProgrammingError) as exc:
            raise ProbeConfigError(f"config error: {str(exc).strip() or 'bad DSN'}") from None
        if params.get("password"):  # as the server will see it, after the DSN's own unquoting
            self.secrets.append(str(params["password"]))
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        start = time.perf_counter()
        try:
            with psycopg.connect(
                dsn,
                connect_timeout=max(1, math.ceil(self.timeout)),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
                **extra,
            ) as conn:
                conn.execute(self.cfg["query"]).fetchone()
        except psycopg.Error as exc:
            # Scrubbed whole, then cut: a secret across the cut would leave its head behind, unmatched.
            text = scrub(str(exc), self.secrets).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ProbeError(f"postgres {where}: {first[:200]}") from None
        latency = (time.perf_counter() - start) * 1000
        return ProbeOutcome(UP, latency, f"postgres {where} answered")
