"""Fixtures: the real local stack, started once per pytest run by the project's own code.

Every test gets its own topic prefix (so its topics and consumer groups are unique) and,
where it needs a source, its own PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from filelock import FileLock
from psycopg2 import sql

from sluiceway import devstack as stack
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings
from sluiceway.devstack.postgres import PostgresServer


@dataclass(frozen=True)
class Stack:
    kafka: KafkaSettings
    pg: PostgresSettings
    s3: S3Settings


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    settings = (StackSettings.for_dev_stack(), KafkaSettings(), PostgresSettings(), S3Settings())
    settings[0].home.mkdir(parents=True, exist_ok=True)
    # the workers of `pytest -n N` share one stack: the first starts it, the others wait
    with FileLock(settings[0].home / "up.lock"):
        already = all(s.running for s in stack.status(*settings))
        stack.up(*settings)
    yield Stack(settings[1], settings[2], settings[3])
    # a worker that finishes first must not stop the stack under the others (`make test`,
    # which runs tests.run, stops it once every worker is done)
    shared = "PYTEST_XDIST_WORKER" in os.environ
    if not already and not shared and os.environ.get("SLUICEWAY_KEEP_STACK") != "1":
        stack.down(*settings)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka(local_stack: Stack, unique: str) -> KafkaSettings:
    """Settings whose topics (and so consumer groups) are this test's alone."""
    return local_stack.kafka.model_copy(update={"topic_prefix": f"t{unique}.sw."})


@contextmanager
def fresh_database(pg: PostgresSettings, name: str) -> Iterator[PostgresSettings]:
    """A new, empty database owned by the settings' role, dropped when the block ends."""
    with closing(psycopg2.connect(pg.dsn())) as owner:
        owner.autocommit = True
        with owner.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg.model_copy(update={"dbname": name})
    # the stack's superuser drops it: FORCE must also end backends that are not the role's
    # (an autovacuum worker in the database made a CI run fail with InsufficientPrivilege)
    server = PostgresServer(StackSettings.for_dev_stack(), pg)
    with closing(server.superuser_connect()) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            # a slot pins WAL and blocks DROP DATABASE; end its walsender, then drop it
            cur.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active_pid IS NOT NULL",
                (name,),
            )
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active",
                (name,),
            )
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def source_db(local_stack: Stack, unique: str) -> Iterator[PostgresSettings]:
    """A fresh database for this test, dropped afterwards."""
    with fresh_database(local_stack.pg, f"sw_test_{unique}") as pg:
        yield pg


def isolated(local_stack: Stack) -> Iterator[tuple[KafkaSettings, PostgresSettings, Cli]]:
    """For module-scoped fixtures: a unique topic prefix, a fresh database and a CLI on both."""
    unique = uuid.uuid4().hex[:10]
    kafka = local_stack.kafka.model_copy(update={"topic_prefix": f"t{unique}.sw."})
    with fresh_database(local_stack.pg, f"sw_test_{unique}") as pg:
        yield kafka, pg, Cli(settings_env(kafka, pg))


@dataclass(frozen=True)
class Cli:
    """Runs the real ``sluiceway`` command with a test's settings in its environment."""

    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "sluiceway.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"sluiceway {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stderr}\n{proc.stdout[-4000:]}"  # --json puts the reason on stdout
            )
        return proc

    def json(self, *args: str, timeout: float = 300) -> Any:
        return json.loads(self(*args, "--json", timeout=timeout).stdout)


def settings_env(
    kafka: KafkaSettings, pg: PostgresSettings, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SLUICEWAY_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "SLUICEWAY_KAFKA_PORT": str(kafka.port),
            "SLUICEWAY_PG_DBNAME": pg.dbname,
            "SLUICEWAY_PG_PORT": str(pg.port),
        }
    )
    env.update(extra or {})
    return env


@pytest.fixture
def cli(kafka: KafkaSettings, source_db: PostgresSettings) -> Cli:
    return Cli(settings_env(kafka, source_db))


def lake_files(root: Path, suffix: str = ".parquet") -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}") if not p.name.startswith("."))


# The longest test files (over a minute and a half each on 2 cores). `make test` hands whole
# files to its workers in collection order; starting these first lets the short files fill in
# around them, instead of one worker finishing a long file alone at the end.
LONGEST_FIRST = (
    "test_sink_crashes.py",
    "test_sink_crashes_helpdesk.py",
    "test_scale_out.py",
    "test_scale_out_helpdesk.py",
    "test_schema_sequence.py",
    "test_schema_changes.py",
    "test_ei_cadence.py",
    "test_capture.py",
    "test_helpdesk.py",
    "test_datapipeline_api.py",
    "test_replay_restore.py",
    "test_delta_chain.py",
    "test_migrate.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: files keep their order within a rank
