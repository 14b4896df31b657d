"""A real PgBouncer (Debian's package) in front of the test server, for the pooler tests.

Transaction mode with several server connections handed out round robin
(``server_round_robin = 1``): consecutive transactions of one client land on different
server connections, which is what a session-bound client gets wrong. Session mode too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """A running pgbouncer process for ``server_dsn``'s server; ``stop()`` ends it."""

    def __init__(self, server_dsn: str, mode: str, pool_size: int = 4) -> None:
        self.mode = mode
        self.port = 0
        params: dict[str, Any] = conninfo_to_dict(server_dsn)
        self.user = str(params.get("user") or "postgres")
        self.folder = Path(tempfile.mkdtemp(prefix=f"pgbouncer-{mode}-"))
        self.folder.chmod(0o755)
        (self.folder / "userlist.txt").write_text(f'"{self.user}" ""\n')
        # A Unix socket folder (the embedded server's) serves as host as well as an address.
        host = str(params.get("host") or "127.0.0.1")
        self.server = f"host={host} port={params.get('port') or 5432}"
        # Run as root, PgBouncer drops to a system user: the one that may open the socket.
        self.system_user = (
            pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else "postgres"
        )
        self.pool_size = pool_size
        self.process = self._start(server_dsn)

    def _start(self, server_dsn: str) -> subprocess.Popen[bytes]:
        """Start pgbouncer on a free port, again on another if one is taken meanwhile."""
        for attempt in range(5):
            self.port = free_port()
            self._write_config()
            process = self._spawn()
            try:
                self._wait_ready(process, server_dsn)
            except _PortTaken:
                if attempt == 4:
                    shutil.rmtree(self.folder, ignore_errors=True)
                    raise
                continue
            except BaseException:  # (its log is in the message)
                _end(process)
                shutil.rmtree(self.folder, ignore_errors=True)
                raise
            return process
        raise AssertionError("unreachable")

    def _write_config(self) -> None:
        (self.folder / "pgbouncer.log").unlink(missing_ok=True)  # an earlier attempt's
        (self.folder / "pgbouncer.ini").write_text(
            f"""[databases]
* = {self.server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder}/userlist.txt
admin_users = {self.user}
pool_mode = {self.mode}
server_round_robin = 1
default_pool_size = {self.pool_size}
min_pool_size = 0
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {self.folder}/pgbouncer.log
pidfile = {self.folder}/pgbouncer.pid
"""
        )

    def _spawn(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        command = [binary, "-q", str(self.folder / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer will not run as root.
            shutil.chown(self.folder, self.system_user)
            for child in self.folder.iterdir():
                shutil.chown(child, self.system_user)
            command[1:1] = ["-u", self.system_user]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def dsn(self, server_dsn: str) -> str:
        """``server_dsn`` (its database and user) through this pooler."""
        params: dict[str, Any] = conninfo_to_dict(server_dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)

    def _wait_ready(self, process: subprocess.Popen[bytes], server_dsn: str) -> None:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                _end(process)
                log = (self.folder / "pgbouncer.log").read_text(errors="replace")[-2000:]
                if "Address already in use" in log:
                    raise _PortTaken(log)
                raise RuntimeError(f"pgbouncer exited: {err} {log}")
            try:
                with psycopg.connect(self.dsn(server_dsn), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                if process.poll() is not None:  # another server answered on its port
                    continue
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the pooler and remove its folder."""
        _end(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


class _PortTaken(RuntimeError):
    """Another process took the free port before pgbouncer listened on it."""


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()
