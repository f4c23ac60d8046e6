"""A private MariaDB server (Debian's mariadb-server): its own data directory, socket and free loopback port.

Started as a real subprocess (`mariadb-install-db`, then `mariadbd --no-defaults`, so /etc/mysql is not read),
stopped after. Running as root needs `--user=root`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pymysql

from tests.servers import free_port

INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
MARIADBD = (
    shutil.which("mariadbd")
    or shutil.which("mysqld")
    or next((p for p in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld") if os.access(p, os.X_OK)), None)
)

USER = "opsprobe"
PASSWORD = "Maria-probe-pw-42"
DATABASE = "opsprobe"


def missing() -> str | None:
    """Why no MariaDB can be started here, or None."""
    if INSTALL_DB is None or MARIADBD is None:
        return "mariadb-server is not installed (apt-get install mariadb-server)"
    return None


class MariaDB:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.socket = directory / "mysqld.sock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _log(self) -> str:
        log = self.directory / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def start(self) -> MariaDB:
        assert INSTALL_DB and MARIADBD
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *user,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.directory / 'mariadbd.pid'}",
                f"--log-error={self.directory / 'error.log'}",
                f"--tmpdir={self.directory}",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--performance-schema=OFF",
                *user,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.process.returncode}: {self._log()}")
            try:
                with self.root() as conn, conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
                    cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
                    cur.execute(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'127.0.0.1'")
                break
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mariadbd did not answer within 60 s: {self._log()}") from None
                time.sleep(0.2)
        return self

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", password="", connect_timeout=2)

    def dsn(self, user: str = USER, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: mariadbd shuts down cleanly
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.process = None
