"""A MariaDB server of a test's own: its own data directory, socket and port, that the test
may stop and start again (never the shared server on 3306)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymysql

from testkit.poll import wait_until
from testkit.stack import free_port


class MariaDBServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.datadir = directory / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def install(self) -> None:
        """A fresh data directory; root logs in over TCP without a password, as on 3306."""
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        assert installer, "mariadb-install-db is not installed (apt-get install mariadb-server)"
        subprocess.run(
            [
                installer,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=" + os.environ.get("USER", "root"),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=" + os.environ.get("USER", "root"),
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.directory / 'mariadb.sock'}",
                f"--pid-file={self.directory / 'mariadb.pid'}",
                f"--log-error={self.directory / 'error.log'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, 60, f"MariaDB on port {self.port}", interval=0.2)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as a restart does; returns once it has exited."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def answers(self) -> bool:
        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
            return True
        except pymysql.err.MySQLError:
            return False
