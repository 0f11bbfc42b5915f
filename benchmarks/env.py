"""An isolated place to benchmark in: the local stack, a fresh database, a unique topic
prefix and slot name, all removed again at the end (the stack itself is left running)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from sluiceway import devstack as stack
from sluiceway.common.entities import entity_names
from sluiceway.common.kafka_io import admin, watermarks
from sluiceway.common.settings import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    StackSettings,
)


@dataclass(frozen=True)
class BenchEnv:
    kafka: KafkaSettings
    pg: PostgresSettings
    slot: str
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``sluiceway`` child process using this place's settings."""
        return {
            **os.environ,
            "SLUICEWAY_KAFKA_TOPIC_PREFIX": self.kafka.topic_prefix,
            "SLUICEWAY_KAFKA_PORT": str(self.kafka.port),
            "SLUICEWAY_PG_DBNAME": self.pg.dbname,
            "SLUICEWAY_PG_PORT": str(self.pg.port),
            "SLUICEWAY_CAPTURE_SLOT": self.slot,
            **extra,
        }


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sluiceway.cli", *args]


def ensure_stack() -> tuple[KafkaSettings, PostgresSettings]:
    settings = (StackSettings.for_dev_stack(), KafkaSettings(), PostgresSettings(), S3Settings())
    if not all(s.running for s in stack.status(*settings)):
        stack.up(*settings)
    return settings[1], settings[2]


def _admin_sql(pg: PostgresSettings, *statements: tuple[Any, tuple[Any, ...]]) -> None:
    with closing(psycopg2.connect(pg.dsn())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement, params in statements:
                cur.execute(statement, params)


def settle_source(pg: PostgresSettings, tables: Iterable[str]) -> None:
    """VACUUM ANALYZE freshly seeded tables, as a long-lived database's would be. Left to
    autovacuum, the vacuum of a few million new rows starts whenever its thresholds say and
    takes a core for tens of seconds, in the middle of whatever phase is being measured."""
    statements = [(sql.SQL("VACUUM ANALYZE {}").format(_table(t)), ()) for t in tables]
    _admin_sql(pg, *statements)


def _table(qualified: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in qualified.split("."))


def _drop(pg: PostgresSettings, dbname: str, slot: str, attempts: int = 5) -> None:
    """Drop the slot (ending its walsender first) and the database."""
    terminate = (
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
        "WHERE slot_name = %s AND active_pid IS NOT NULL"
    )
    drop_slot = (
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = %s AND NOT active"
    )
    name = sql.Identifier(dbname)
    forced = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    # FORCE refuses when a backend it may not terminate is there: an autovacuum worker on
    # the freshly seeded tables is the superuser's. A plain DROP stops autovacuum in the
    # database itself, once FORCE has ended (or found none of) the bench's own sessions.
    plain = sql.SQL("DROP DATABASE IF EXISTS {}").format(name)
    for attempt in range(attempts):
        try:
            _admin_sql(pg, (terminate, (slot,)))
            time.sleep(0.2)
            _admin_sql(pg, (drop_slot, (slot,)))
            try:
                _admin_sql(pg, (forced, ()))
            except psycopg2.errors.InsufficientPrivilege:
                _admin_sql(pg, (plain, ()))
            return
        except psycopg2.Error:  # a session still closing, a slot still active: retry
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)


def delete_topics(kafka: KafkaSettings, timeout: float = 30.0) -> int:
    client = admin(kafka)
    names = [
        t for t in client.list_topics(timeout=timeout).topics if t.startswith(kafka.topic_prefix)
    ]
    if names:
        for fut in client.delete_topics(names, operation_timeout=timeout).values():
            fut.result(timeout)
    return len(names)


@contextmanager
def bench_env(tag: str) -> Iterator[BenchEnv]:
    """A fresh database, topic prefix and slot; everything is removed when the block ends."""
    kafka, pg = ensure_stack()
    unique = uuid.uuid4().hex[:8]
    dbname = f"sw_bench_{tag}_{unique}"
    slot = f"sw_bench_{tag}_{unique}"
    kafka = kafka.model_copy(update={"topic_prefix": f"bench{unique}.sw."})
    _admin_sql(pg, (sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)), ()))
    workdir = Path(tempfile.mkdtemp(prefix=f"sw-bench-{tag}-"))
    try:
        yield BenchEnv(kafka, pg.model_copy(update={"dbname": dbname}), slot, workdir)
    finally:
        _drop(pg, dbname, slot)
        delete_topics(kafka)
        shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def scrape(port: int, timeout: float = 0.5) -> dict[str, float]:
    """Prometheus metrics summed per name (labels dropped); {} when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            out[base] = out.get(base, 0.0) + float(value)
    return out


def topic_events(kafka: KafkaSettings) -> int:
    """Records on the change topics now (sum of high watermarks)."""
    total = 0
    for entity in entity_names():
        marks = watermarks(kafka, kafka.cdc_topic(entity), range(kafka.partitions))
        total += sum(high for _low, high in marks.values())
    return total


class WalProbe:
    """One connection that reads the WAL end and the slot's confirmed position, in bytes."""

    def __init__(self, pg: PostgresSettings, slot: str) -> None:
        self.conn = psycopg2.connect(pg.dsn())
        self.conn.autocommit = True
        self.slot = slot

    def read(self) -> tuple[int, int | None, bool]:
        """(WAL end, confirmed_flush_lsn or None, slot active)."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pg_current_wal_lsn() - '0/0', s.confirmed_flush_lsn - '0/0', "
                "coalesce(s.active, false) FROM (SELECT 1) one LEFT JOIN pg_replication_slots s "
                "ON s.slot_name = %s",
                (self.slot,),
            )
            row = cur.fetchone()
        assert row is not None
        wal, confirmed, active = row
        return int(wal), None if confirmed is None else int(confirmed), bool(active)

    def close(self) -> None:
        self.conn.close()
