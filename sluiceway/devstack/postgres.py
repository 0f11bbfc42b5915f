"""PostgreSQL of the local stack: a private cluster with logical decoding turned on.

Layout under ``<home>/postgres``: ``data/`` (initdb), ``socket/`` (unix socket),
``postgres.log``. As root, initdb and the server run as the ``postgres`` OS user.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from sluiceway.common.errors import ConfigError, StackDownError
from sluiceway.common.settings import PostgresSettings, StackSettings
from sluiceway.devstack import tools
from sluiceway.devstack.base import ServerStatus, live_pid, port_open, run_logged, wait_until

log = logging.getLogger("sluiceway.devstack")

NAME = "postgres"
OS_USER = "postgres"
SUPERUSER = "postgres"
MARKER = "postgres"
STOP_TIMEOUT_S = 60
# The kernel's limit on a unix socket path (sun_path) is 108 bytes including the NUL.
MAX_SOCKET_PATH = 107
SERVER_OPTIONS: tuple[tuple[str, str], ...] = (
    ("wal_level", "logical"),
    ("max_replication_slots", "16"),
    ("max_wal_senders", "16"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
)
PG_HBA = """\
# Written by `sluiceway stack up`.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
"""


def server_options(pg: PostgresSettings, socket_dir: Path) -> list[str]:
    """The postgres command-line options pg_ctl passes on (-o)."""
    opts = ["-c", f"listen_addresses={pg.host}", "-p", str(pg.port), "-k", str(socket_dir)]
    for key, value in SERVER_OPTIONS:
        opts += ["-c", f"{key}={value}"]
    return opts


def as_server_user() -> list[str]:
    """Command prefix that runs a program as the postgres OS user (empty unless root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise ConfigError(
            f"running as root but there is no '{OS_USER}' OS user to run PostgreSQL; "
            f"install it with: {tools.PG_INSTALL}"
        ) from exc
    runuser = shutil.which("runuser") or "runuser"
    return [runuser, "-u", OS_USER, "--"]


class PostgresServer:
    """up/status/down of the local stack's PostgreSQL cluster."""

    name = NAME

    def __init__(self, stack: StackSettings, pg: PostgresSettings) -> None:
        self.stack = stack
        self.pg = pg
        self.dir = stack.home / "postgres"
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "socket"
        self.log_file = self.dir / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.pg.host}:{self.pg.port}"

    def status(self) -> ServerStatus:
        return ServerStatus(
            name=NAME,
            running=port_open(self.pg.host, self.pg.port),
            pid=live_pid(self.data / "postmaster.pid", MARKER),
            address=self.address,
            data_dir=self.data,
            log_file=self.log_file,
        )

    def answers(self) -> bool:
        """True when Sluiceway's role can run SELECT 1 over TCP."""
        if not port_open(self.pg.host, self.pg.port):
            return False
        try:
            conn = psycopg2.connect(**self.pg.connect_kwargs(), connect_timeout=3)
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            return False
        finally:
            conn.close()
        return True

    def up(self) -> ServerStatus:
        """Create the cluster on first use, start it unless it answers, ensure role and db."""
        if self.answers():
            return self.status()
        bindir = tools.find_pg_bindir()
        tools.check_wal2json(bindir)
        prefix = as_server_user()
        self._prepare_dirs(prefix)
        if not (self.data / "PG_VERSION").is_file():
            self._initdb(bindir, prefix)
        if live_pid(self.data / "postmaster.pid", MARKER) is None:
            self._start(bindir, prefix)
        wait_until(
            self._superuser_answers,
            name=NAME,
            address=f"{self.socket_dir} (unix socket)",
            log_file=self.log_file,
            timeout_s=self.stack.start_timeout_s,
            alive=lambda: live_pid(self.data / "postmaster.pid", MARKER) is not None,
        )
        self._ensure_role_and_database()
        wait_until(
            self.answers,
            name=NAME,
            address=self.address,
            log_file=self.log_file,
            timeout_s=self.stack.start_timeout_s,
        )
        return self.status()

    def down(self) -> ServerStatus:
        """pg_ctl stop -m fast when the cluster runs; nothing otherwise."""
        if live_pid(self.data / "postmaster.pid", MARKER) is not None:
            bindir = tools.find_pg_bindir()
            cmd = [*as_server_user(), str(bindir / "pg_ctl"), "-D", str(self.data)]
            cmd += ["-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S), "stop"]
            run_logged(cmd, self.dir / "pg_ctl.log", "postgres: pg_ctl stop", STOP_TIMEOUT_S + 10)
        return self.status()

    def _prepare_dirs(self, prefix: list[str]) -> None:
        """Create the folders, hand them to the server user and check it can reach them."""
        socket_path = self.socket_dir / f".s.PGSQL.{self.pg.port}"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"socket path {socket_path} is longer than {MAX_SOCKET_PATH} characters; "
                "set SLUICEWAY_STACK_HOME to a shorter folder"
            )
        for folder in (self.dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not prefix:
            return
        entry = pwd.getpwnam(OS_USER)
        for root, dirs, files in os.walk(self.dir):
            for name in [".", *dirs, *files]:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o700)
        if not self._reachable(prefix):
            _allow_traverse(self.dir.parent)
        if not self._reachable(prefix):
            raise ConfigError(
                f"the '{OS_USER}' OS user cannot reach {self.dir}; make its parent folders "
                "traversable (chmod o+x) or set SLUICEWAY_STACK_HOME elsewhere"
            )

    def _reachable(self, prefix: list[str]) -> bool:
        probe = [*prefix, "test", "-w", str(self.dir), "-a", "-x", str(self.dir)]
        return subprocess.run(probe, check=False).returncode == 0

    def _initdb(self, bindir: Path, prefix: list[str]) -> None:
        cmd = [*prefix, str(bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER]
        cmd += ["-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"]
        run_logged(cmd, self.dir / "initdb.log", "postgres: initdb", 300.0)
        (self.data / "pg_hba.conf").write_text(PG_HBA)
        if prefix:
            entry = pwd.getpwnam(OS_USER)
            os.chown(self.data / "pg_hba.conf", entry.pw_uid, entry.pw_gid)

    def _start(self, bindir: Path, prefix: list[str]) -> None:
        """pg_ctl start, detached in its own session; pg_ctl waits (bounded) for readiness."""
        opts = shlex.join(server_options(self.pg, self.socket_dir))
        cmd = [*prefix, str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)]
        timeout = int(self.stack.start_timeout_s)
        cmd += ["-o", opts, "-w", "-t", str(timeout), "start"]
        try:
            result = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                start_new_session=True, timeout=timeout + 10, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise StackDownError(
                f"postgres did not start within {timeout}s; see the last lines of {self.log_file}"
            ) from exc
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackDownError(
                f"postgres: pg_ctl start failed ({last[0]}); see the last lines of {self.log_file}"
            )

    def superuser_connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        """The stack's bootstrap superuser, over the Unix socket (no password)."""
        return psycopg2.connect(
            host=str(self.socket_dir), port=self.pg.port, user=SUPERUSER, dbname=dbname,
            connect_timeout=3,
        )  # fmt: skip

    def _superuser_answers(self) -> bool:
        try:
            self.superuser_connect().close()
        except psycopg2.Error:
            return False
        return True

    def _ensure_role_and_database(self) -> None:
        """Role with LOGIN REPLICATION and the settings' password; database owned by it."""
        role, db = sql.Identifier(self.pg.user), sql.Identifier(self.pg.dbname)
        password = sql.Literal(self.pg.password.get_secret_value())
        conn = self.superuser_connect()
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.pg.user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                sql.SQL(verb + " ROLE {} LOGIN REPLICATION CREATEDB PASSWORD {}").format(
                    role, password
                )
            )
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.pg.dbname,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
        finally:
            conn.close()


def _allow_traverse(folder: Path) -> None:
    """Let the server user pass through (not list) the folders above the stack home.

    A checkout under a private home (/root is 0700) would otherwise keep PostgreSQL, which
    refuses to run as root, out of its own data folder.
    """
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("granting o+x on %s so the postgres user can reach the stack", parent)
            parent.chmod(mode | stat.S_IXOTH)
