"""A PostgreSQL cluster of our own from Debian's packages: for `voffice up` (call history when
no `--database` is given), the benchmarks and the tests.

PostgreSQL refuses to run as root, and `make run` runs as root on a fresh machine: as root the
cluster belongs to Debian's `postgres` user, which must be able to reach its data directory.
`cluster_dir` keeps it under the run directory when it can, else under /var/lib/voffice (a
pytest tmp folder, or a checkout in /root, is closed to other users). Connections: TCP on
loopback only, with a password made at initdb (scram-sha-256; kept 0600 in `password_file`,
and in the URL the stack gives its processes through their environment): the `voffice`
role is a superuser, and trust on loopback would let any local user run commands as the
cluster's owner. The Unix socket lives inside the data directory (only its owner reaches it;
a system cluster's /var/run/postgresql is never touched).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from routing.stack.ports import free_port
from routing.stack.redis_server import stop_process

USER = "postgres"
DATABASE = "voffice"
ROLE = "voffice"
SHARED = Path("/var/lib/voffice/postgres")


class PostgresError(Exception):
    """The cluster could not be made or started; a one-line reason."""


def bin_dir() -> Path:
    """Debian's server binaries (postgresql-NN), the newest installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise PostgresError("PostgreSQL is not installed (Debian package postgresql; `make install`)")
    return found[-1].parent


def _owner() -> pwd.struct_passwd | None:
    """Whom the server runs as: ourselves, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError as exc:
        raise PostgresError(f"no {USER!r} user (Debian's postgresql package makes it)") from exc


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether every existing ancestor of `path` lets `uid` through (x for owner, group or other)."""
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def cluster_dir(run_dir: Path) -> Path:
    """The data directory for the stack in `run_dir`: `run_dir/postgres`, or when the server's
    user cannot reach that, a folder of its own under /var/lib/voffice/postgres (named after
    the run directory, so the same stack finds its history again)."""
    run_dir = run_dir.resolve()
    owner = _owner()
    if owner is None or _reachable(run_dir.parent, owner.pw_uid, owner.pw_gid):
        return run_dir / "postgres"
    return SHARED / hashlib.sha1(str(run_dir).encode()).hexdigest()[:16]


def stop_postgres(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    stop_process(proc, timeout)


class PostgresServer:
    """One cluster: `init()` once (initdb, the `voffice` role and database), `start()`, `stop()`."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", fsync: bool = True,
                 password_file: Path | None = None):
        self.data_dir = data_dir
        self.password_file = password_file
        self.host = host
        self.port = port or free_port(host)
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str | None:
        if self.password_file is None or not self.password_file.exists():
            return None
        return self.password_file.read_text().strip() or None

    def url_of(self, database: str) -> str:
        password = self.password
        user = f"{ROLE}:{password}" if password else ROLE
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def _as_owner(self) -> dict[str, object]:
        owner = _owner()
        return {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb (UTF-8, C.UTF-8 collation, trust on loopback) when the folder has no cluster yet."""
        if self.initialised():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = _owner()
        if owner is not None:
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        self.data_dir.chmod(0o700)
        argv = [str(bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", ROLE, "-E", "UTF8",
                "--locale=C.UTF-8", "--no-instructions", "--auth-local=trust"]
        pwfile = None
        if self.password_file is not None:
            password = secrets.token_hex(24)
            self.password_file.parent.mkdir(parents=True, exist_ok=True)
            self.password_file.touch(mode=0o600)
            self.password_file.chmod(0o600)
            self.password_file.write_text(password + "\n")
            fd, name = tempfile.mkstemp(prefix="voffice-pw-")  # readable by initdb's user, removed at once
            pwfile = Path(name)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            if owner is not None:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            argv += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            argv += ["--auth-host=trust"]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=120, **self._as_owner())  # type: ignore[call-overload]
        finally:
            if pwfile is not None:
                pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-1:]
            raise PostgresError(f"initdb {self.data_dir} failed: {' '.join(last)}")

    def command(self) -> list[str]:
        return [str(bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", self.host,
                "-k", str(self.data_dir), "-c", f"fsync={'on' if self.fsync else 'off'}",
                "-c", "max_connections=50", "-c", "shared_buffers=64MB"]

    def popen_options(self) -> dict[str, object]:
        return self._as_owner()

    def ready(self) -> bool:
        """Accepting connections, and the `voffice` database exists (made on the first start)."""
        import psycopg

        try:
            with psycopg.connect(self.url_of("postgres"), connect_timeout=1, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab") if os.access(self.data_dir.parent, os.W_OK) else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     **self._as_owner())  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited with code {self.proc.returncode} (port {self.port} in use?)")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not answer on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_postgres(self.proc)
            self.proc = None

    def remove(self) -> None:
        """Stop and delete the cluster and its log (tests, benchmarks)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        (self.data_dir.parent / f"{self.data_dir.name}.log").unlink(missing_ok=True)
