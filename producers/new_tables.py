"""Tenant tables created while capture runs: added to the publication, their rows read.

A schema-per-tenant entity gains a table whenever a tenant's schema is created. pgoutput
sends only the changes of tables its publication listed when each change was written, so
a new table's first rows, written before it is added, would never reach the stream.
Every ``capture.discover_s`` seconds capture looks for matching tables the publication
lacks and adds each in one transaction that also reads its rows:

1. ``LOCK TABLE ... IN SHARE MODE`` waits for the transactions writing the table to end and
   holds new writers back (readers go on);
2. ``ALTER PUBLICATION ... ADD TABLE``: a change written after this transaction commits is
   published (a writer held back by the lock writes after it);
3. every row is read and produced as a snapshot event (``op = r``) whose position is the WAL
   insert position read inside the transaction: below the commit of this transaction, so
   below every published change of the table, which "the highest position wins" puts after;
4. Kafka acknowledges the rows, then the transaction commits and the lock is released.

So each row is carried exactly once: by the read when it was written before the commit, by
the stream after. When the lock is not granted within ``lock_timeout`` (a long transaction
writing the table) or adding fails (capture's role does not own the table), nothing is
committed and the table is tried again at the next look, rows included: nothing is lost
meanwhile, the table's changes just wait. A crash after Kafka acknowledged the rows and
before the commit leaves those rows on the topics; the next look reads them again with a
higher position, so a row deleted in between would come back: the window is one commit.

Publications FOR ALL TABLES (or FOR TABLES IN SCHEMA) already publish a new table from its
first write: nothing is added then.
"""

from __future__ import annotations

import functools
import logging
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
from confluent_kafka import Producer
from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.common.redact import pg_error_line
from sluiceway.producers.budget import SourceBudget
from sluiceway.producers.config import CaptureSettings
from sluiceway.producers.db import connect
from sluiceway.producers.errors import ProduceError
from sluiceway.producers.events import lsn_to_int, position
from sluiceway.producers.snapshot import SnapshotRun, snapshot_table
from sluiceway.producers.tables import CapturedTable
from sluiceway.producers.tenant_tables import has_per_schema, live_tables, published
from sluiceway.producers.tenants import Tenants

log = logging.getLogger("sluiceway.capture")
LOCK_TIMEOUT = "10s"


@dataclass
class NewTables:
    """Looks for tenant tables the publication lacks and adds them with their rows."""

    settings: CaptureSettings
    codec: Codec
    prod: Producer
    tenants: Tenants
    added: list[str] = field(default_factory=list)
    budget: SourceBudget = field(init=False)  # every look's reads share capture's budget

    def __post_init__(self) -> None:
        tuning = self.settings.tuning
        self.budget = SourceBudget(tuning.snapshot_rate, tuning.source_max_queries)

    @functools.cached_property
    def wanted(self) -> bool:
        """Only pgoutput reads a publication, and only tenant tables come and go (asked
        every step of the stream: once is enough, the catalog does not change)."""
        tuning = self.settings.tuning
        return tuning.plugin == "pgoutput" and has_per_schema(self.codec.catalog)

    def look(self) -> list[str]:
        """Add every matching table the publication lacks; ``schema.table`` of those added."""
        done: list[str] = []
        with closing(connect(self.settings.pg)) as conn:
            for table in self._missing(conn):
                if self._add(conn, table):
                    done.append(table.qualified)
        self.added += done
        return done

    def _missing(self, conn: Any) -> list[CapturedTable]:
        with conn.cursor() as cur:
            names = published(cur, self.settings.tuning.publication)
            tables = live_tables(cur, self.codec.catalog)
        conn.rollback()
        if names is None:
            return []
        return [t for t in tables if t.per_schema and t.qualified not in names]

    def _add(self, conn: Any, table: CapturedTable) -> bool:
        """One transaction: lock, publish, read and produce, wait for Kafka, commit."""
        publication = self.settings.tuning.publication
        target = sql.Identifier(table.schema, table.name)
        try:
            with conn.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
                cur.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(target))
                cur.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(publication), target))  # fmt: skip
                rows = self._read(cur, table)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            log.warning(
                "could not add %s to publication %s (%s); trying again at the next look: "
                "its changes wait meanwhile",
                table.qualified, publication, pg_error_line(exc),
            )  # fmt: skip
            return False
        log.info("added %s to publication %s with its %d rows", table.qualified, publication, rows)
        return True

    def _read(self, cur: Any, table: CapturedTable) -> int:
        """Produce every row of ``table`` at a position below this transaction's commit."""
        cur.execute("SELECT pg_current_wal_insert_lsn()::text, now()")
        lsn, now = cur.fetchone()
        point: tuple[int, datetime] = (position(lsn_to_int(lsn), 0), now)
        run = SnapshotRun(
            self.settings, self.codec, self.prod, point, None, None, shared_budget=self.budget
        )
        run.tenants = self.tenants
        snapshot_table(cur, run, table)
        if self.prod.flush(self.settings.tuning.flush_timeout_s) != 0:
            raise ProduceError(f"Kafka did not acknowledge the rows of {table.qualified} in time")
        run.acks.raise_if_failed()
        return run.counts.get(table.entity, 0)
