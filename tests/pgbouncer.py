"""A real PgBouncer (Debian's package) in front of the test server, for the pooler tests.

Transaction mode with several server connections handed out round robin
(``server_round_robin = 1``): consecutive transactions of one client land on different
server connections, which is what a session-bound client gets wrong. Session mode too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: PgBouncer's own default port (not Supabase's 6543), one per test process.
BASE_PORT = {"transaction": 6432, "session": 6452}


def worker_offset() -> int:
    """0 for the first pytest-xdist worker (or no xdist), 1 for the next, ..."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


class PgBouncer:
    """A running pgbouncer process for ``server_dsn``'s server; ``stop()`` ends it."""

    def __init__(self, server_dsn: str, mode: str, port: int, pool_size: int = 4) -> None:
        self.mode = mode
        self.port = port
        params: dict[str, Any] = conninfo_to_dict(server_dsn)
        self.user = str(params.get("user") or "postgres")
        self.folder = Path(tempfile.mkdtemp(prefix=f"pgbouncer-{mode}-"))
        self.folder.chmod(0o755)
        (self.folder / "userlist.txt").write_text(f'"{self.user}" ""\n')
        host = params.get("host") or "127.0.0.1"
        server_port = params.get("port") or "5432"
        (self.folder / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder}/userlist.txt
admin_users = {self.user}
pool_mode = {mode}
server_round_robin = 1
default_pool_size = {pool_size}
min_pool_size = 0
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {self.folder}/pgbouncer.log
pidfile = {self.folder}/pgbouncer.pid
"""
        )
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        command = [binary, "-q", str(self.folder / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer will not run as root: it drops to the postgres system user.
            shutil.chown(self.folder, "postgres")
            for child in self.folder.iterdir():
                shutil.chown(child, "postgres")
            command[1:1] = ["-u", "postgres"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(server_dsn)

    def dsn(self, server_dsn: str) -> str:
        """``server_dsn`` (its database and user) through this pooler."""
        params: dict[str, Any] = conninfo_to_dict(server_dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)

    def _wait_ready(self, server_dsn: str) -> None:
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = (self.folder / "pgbouncer.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pgbouncer exited: {err} {log}")
            try:
                with psycopg.connect(self.dsn(server_dsn), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the pooler and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.folder, ignore_errors=True)
