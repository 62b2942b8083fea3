"""Local Redis, PostgreSQL and PgBouncer servers on loopback, for `finex dev` and the tests.

Each runs as a child process from Debian's packages (hack/bootstrap.sh installs them). They bind
127.0.0.1 only. PostgreSQL's ``initdb`` and PgBouncer refuse to run as root, so when we are root
they are created and run as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Settings that trade durability for speed. Only ever used for throwaway local clusters.
FAST_UNSAFE_PG_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class ServiceError(RuntimeError):
    """A local service could not be found, started or reached."""


@dataclass
class LocalService:
    """A server process we started; ``url`` is what clients connect to."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to shut down cleanly (SIGTERM; SIGINT for PostgreSQL's fast mode)."""
        if self.process.poll() is not None:
            return
        sig = signal.SIGINT if self.name == "postgresql" else signal.SIGTERM
        # To the whole group (each server starts in its own session): as root, PostgreSQL runs
        # under runuser, which would pass the signal on as SIGTERM, PostgreSQL's slow "smart"
        # shutdown that waits for every client to leave.
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _which(name: str, extra_globs: Sequence[str] = ()) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    raise ServiceError(f"{name} not found; run `make bootstrap` (hack/bootstrap.sh) to install it")


def _pg_bin(name: str) -> str:
    return _which(name, [f"/usr/lib/postgresql/*/bin/{name}"])


def _as_postgres_user(argv: list[str]) -> list[str]:
    """Prefix argv so it runs as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


def _wait_until(
    check: object, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceError(f"{what} exited with code {proc.returncode}:\n{tail}")
        if check():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not become ready within {timeout:.0f}s (log: {log})")


def start_redis(
    data_dir: Path,
    port: int | None = None,
    *,
    appendonly: bool = False,
    extra_args: Sequence[str] = (),
    also_listen: str | None = None,
) -> LocalService:
    """Start redis-server on 127.0.0.1 with its files in data_dir.

    With ``appendonly`` Redis keeps its data in an append-only file (fsync every second) in
    data_dir and reloads it on the next start in the same folder: what ``make dev`` runs, so a
    restart keeps queued jobs, and what the chaos tier restarts after a SIGKILL. Without it
    nothing is written to disk (the test fixtures' throwaway servers). ``extra_args`` are more
    ``--option value`` pairs (``--replicaof``, say).

    also_listen adds one more address to listen on, for clients that are not on this host's
    loopback (the test cluster's Pods, on the bridge the test runner made). Protected mode is
    then off, since it would refuse every such client of a server without a password.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / "redis.log"
    argv = [
        _which("redis-server"),
        "--bind",
        *(["127.0.0.1", also_listen] if also_listen else ["127.0.0.1"]),
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "everysec",
        # A queue must never lose a job to eviction (docs/install.md).
        "--maxmemory-policy",
        "noeviction",
        "--protected-mode",
        "no" if also_listen else "yes",
        "--logfile",
        str(log),
        *extra_args,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    _wait_until(lambda: _redis_loaded(port), "redis-server", proc, log)
    return LocalService("redis", f"redis://127.0.0.1:{port}/0", port, proc, log)


def _redis_loaded(port: int) -> bool:
    """True once Redis answers PING (it answers LOADING while it replays its AOF)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_sentinel(
    data_dir: Path, master_port: int, service: str = "mymaster", port: int | None = None
) -> LocalService:
    """Start redis-sentinel on 127.0.0.1 watching the master at master_port (quorum 1).

    Fast timings for tests: the master counts as down after 1 s without a reply. The URL is
    what REDIS_URL takes to reach Redis through this Sentinel.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / "sentinel.log"
    config = data_dir / "sentinel.conf"  # Sentinel rewrites it with what it learns
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {data_dir}\nlogfile {log}\n"
        f"sentinel monitor {service} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 5000\n"
        f"sentinel parallel-syncs {service} 1\n"
    )
    proc = subprocess.Popen(
        [_which("redis-sentinel"), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_until(lambda: _redis_loaded(port), "redis-sentinel", proc, log)
    return LocalService(
        "sentinel", f"redis+sentinel://127.0.0.1:{port}/{service}/0", port, proc, log
    )


def init_postgres(data_dir: Path) -> None:
    """Create a PostgreSQL cluster in data_dir unless one is there (trust auth on loopback)."""
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        check = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(data_dir)],
            capture_output=True,
            check=False,
        )
        if check.returncode != 0:
            raise ServiceError(
                f"PostgreSQL runs as the postgres user, which cannot reach {data_dir} (a parent "
                f"folder is not world-executable). Choose a data folder it can reach, e.g. "
                f"FINEX_DEV_DATA_DIR=/var/tmp/finex-dev, or move the checkout."
            )
    data_dir.chmod(0o700)
    _chown_to_postgres(data_dir)
    cmd = _as_postgres_user(
        [
            _pg_bin("initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
    )
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"initdb failed for {data_dir}:\n{result.stdout}\n{result.stderr}")


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    max_connections: int = 200,
    fast_unsafe: bool = False,
    also_listen: str | None = None,
    trust_network: str | None = None,
) -> LocalService:
    """Start postgres on 127.0.0.1 for the cluster in data_dir, initialising it when new.

    The parent folders of data_dir must be traversable by the postgres user when we are root.
    also_listen adds an address to listen on, and trust_network (a CIDR) lets clients from it in
    without a password, as loopback clients are: the test cluster's Pods on the runner's bridge.
    """
    init_postgres(data_dir)
    if trust_network:
        hba = data_dir / "pg_hba.conf"
        line = f"host all all {trust_network} trust"
        if line not in hba.read_text().splitlines():
            with hba.open("a") as rules:
                rules.write(line + "\n")
    port = port or free_port()
    log = data_dir.parent / f"{data_dir.name}.log"
    log.touch()
    _chown_to_postgres(log)
    argv = [
        _pg_bin("postgres"),
        "-D",
        str(data_dir),
        "-c",
        f"listen_addresses=127.0.0.1{',' + also_listen if also_listen else ''}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={data_dir}",
        "-c",
        f"max_connections={max_connections}",
    ]
    if fast_unsafe:
        for setting in FAST_UNSAFE_PG_SETTINGS:
            argv += ["-c", setting]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            _as_postgres_user(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        result = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    _wait_until(ready, "postgres", proc, log, timeout=60)
    return LocalService("postgresql", url, port, proc, log)


def start_pgbouncer(
    data_dir: Path,
    server_port: int,
    port: int | None = None,
    *,
    pool_mode: str = "transaction",
    ignore_startup_parameters: str = "",
) -> LocalService:
    """Start Debian's pgbouncer on 127.0.0.1 in front of the PostgreSQL at server_port.

    Every database name is passed through to the server as user postgres, with trust auth (the
    clients' user must be ``postgres``, listed in the auth file). ``ignore_startup_parameters``
    is PgBouncer's own setting, empty by default as in PgBouncer: a client that sends a startup
    parameter PgBouncer does not know (``options``, say) is refused at login.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    _chown_to_postgres(data_dir)
    port = port or free_port()
    log = data_dir / "pgbouncer.log"
    users = data_dir / "userlist.txt"
    users.write_text('"postgres" ""\n')
    config = data_dir / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={server_port} user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        f"pool_mode = {pool_mode}\nignore_startup_parameters = {ignore_startup_parameters}\n"
        f"logfile = {log}\nmax_client_conn = 500\ndefault_pool_size = 50\n"
        # A dead server is retried quickly: the tests restart servers behind it.
        "server_login_retry = 1\n"
    )
    for path in (users, config):
        _chown_to_postgres(path)
    proc = subprocess.Popen(
        _as_postgres_user([_which("pgbouncer", ["/usr/sbin/pgbouncer"]), str(config)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_until(lambda: port_open("127.0.0.1", port), "pgbouncer", proc, log)
    return LocalService(
        "pgbouncer", f"postgresql://postgres@127.0.0.1:{port}/postgres", port, proc, log
    )


def stop_all(services: Sequence[LocalService]) -> None:
    """Stop services in reverse start order, ignoring ones already gone."""
    for svc in reversed(services):
        with contextlib.suppress(ProcessLookupError):
            svc.stop()
