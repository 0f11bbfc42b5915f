"""Paced inserts, updates and deletes on the source, with a ledger of every committed change.

Change-capture tests need a known stream of committed changes to compare the change topics
against. Planning is pure (a seeded ``random.Random`` and the live keys in, operations out)
so its rules are tested without a database; execution and pacing are thin and injectable
(the pacing, ledger file and summary are shared with the catalog churn:
``sluiceway.devstack.churn_run``).
"""

from __future__ import annotations

import functools
import json
import random
from bisect import bisect
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, TextIO

import psycopg2
from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.common.settings import PostgresSettings
from sluiceway.devstack import seed
from sluiceway.devstack.churn_run import (
    MAX_DRAWS,
    OP_CUM,
    OPS,
    ChurnSettings,
    ChurnSummary,
    Clock,
    Commit,
    open_ledger,
    pace,
    source_error,
)
from sluiceway.devstack.churn_sql import BatchSql
from sluiceway.devstack.seed import Row
from sluiceway.producers.db import connect
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.source import require_tables, table_name

# The generator writes the Jira example's tables (its rows, ids and parents are Jira-shaped),
# so it names their entities itself. Issues and their children are where real trackers see
# most of their writes.
ENTITY_WEIGHTS = {"project": 5, "user": 10, "issue": 30, "comment": 35, "worklog": 20}
ENTITY_NAMES = tuple(ENTITY_WEIGHTS)
ENTITY_CUM = list(accumulate(ENTITY_WEIGHTS.values()))
# The seed's id ranges, so churned rows look like seeded ones.
ID_BASE = {"user": 10_000, "project": 20_000, "issue": 30_000, "comment": 40_000, "worklog": 50_000}
# The entity a new row must point at (besides a user), so references stay sensible.
PARENT = {"project": "user", "issue": "project", "comment": "issue", "worklog": "issue"}
# New rows happen now; the seed's random past timestamps would make them look historical.
FRESH = ("created", "updated", "started", "resolution_date")


@dataclass(frozen=True)
class Op:
    """One change: the whole row for ``c``, the changed columns for ``u``, nothing for ``d``."""

    entity: str
    tenant_id: str
    id: int
    op: str
    values: Row | None = None


class LiveKeys:
    """Ids of one (tenant, entity): a list for O(1) random picks, positions for O(1) removal."""

    def __init__(self, ids: Sequence[int] = ()) -> None:
        self.ids: list[int] = []
        self._pos: dict[int, int] = {}
        for key in ids:
            self.add(key)

    def add(self, key: int) -> None:
        self._pos[key] = len(self.ids)
        self.ids.append(key)

    def remove(self, key: int) -> None:
        pos, last = self._pos.pop(key), self.ids.pop()
        if last != key:
            self.ids[pos], self._pos[last] = last, pos

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SourceState:
    """What the planner needs to know about the source when it starts."""

    tenants: list[str]
    keys: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    project_keys: dict[tuple[str, int], str] = field(default_factory=dict)


class Planner:
    """Chooses changes from a seeded RNG, tracking which keys are live as it goes."""

    def __init__(self, rng: random.Random, state: SourceState) -> None:
        self.rng = rng
        self.tenants = list(state.tenants)
        self.live = {
            (t, e): LiveKeys(state.keys.get((t, e), ())) for t in self.tenants for e in ENTITY_NAMES
        }
        self.project_keys = dict(state.project_keys)
        # Fresh ids only, never reused after a delete, so every insert is a new key downstream.
        self.next_id = {
            k: max(ID_BASE[k[1]], max(live.ids, default=-1) + 1) for k, live in self.live.items()
        }

    def batch(self, size: int, now: datetime) -> list[Op]:
        return [self.next_op(now) for _ in range(size)]

    def next_op(self, now: datetime) -> Op:
        tenant, entity, kind = self._draw()
        if kind == "c":
            return self._insert(tenant, entity, now)
        if kind == "u":
            return self._update(tenant, entity, now)
        return self._delete(tenant, entity)

    def _draw(self) -> tuple[str, str, str]:
        rng, tenants = self.rng, self.tenants
        # What rng.choices(..., cum_weights=...)[0] returns, from the same one random() call
        # (so a seed plans what it did), without that call's checks of its arguments.
        uniform, last_op, last_entity = rng.random, len(OPS) - 1, len(ENTITY_NAMES) - 1
        tenant = tenants[0]
        for _ in range(MAX_DRAWS):
            tenant = rng.choice(tenants)
            kind = OPS[bisect(OP_CUM, uniform() * OP_CUM[-1], 0, last_op)]
            entity = ENTITY_NAMES[bisect(ENTITY_CUM, uniform() * ENTITY_CUM[-1], 0, last_entity)]
            if self._feasible(tenant, entity, kind):
                return tenant, entity, kind
        return tenant, "user", "c"  # always possible: a user needs nothing to exist

    def _feasible(self, tenant: str, entity: str, kind: str) -> bool:
        live = len(self.live[tenant, entity])
        if kind == "u":
            return live > 0
        if kind == "d":
            # Keep one user and one project, or the tenant could never gain issues again.
            return live > (1 if entity in ("user", "project") else 0)
        parent = PARENT.get(entity)
        users = len(self.live[tenant, "user"])
        return parent is None or (users > 0 and len(self.live[tenant, parent]) > 0)

    def _insert(self, tenant: str, entity: str, now: datetime) -> Op:
        key = (tenant, entity)
        new_id = self.next_id[key]
        self.next_id[key] = new_id + 1
        row = self._new_row(tenant, entity, new_id - ID_BASE[entity], now)
        for name in FRESH:
            if row.get(name) is not None:
                row[name] = now
        self.live[key].add(new_id)
        return Op(entity, tenant, new_id, "c", row)

    def _new_row(self, tenant: str, entity: str, n: int, now: datetime) -> Row:
        rng, users = self.rng, self.live[tenant, "user"].ids
        if entity == "user":
            return seed.gen_user(rng, n)
        if entity == "project":
            row = seed.gen_project(rng, n, users)
            self.project_keys[tenant, row["id"]] = row["key"]
            return row
        if entity == "issue":
            pid = rng.choice(self.live[tenant, "project"].ids)
            project = {"id": pid, "key": self.project_keys[tenant, pid], "created": now}
            return seed.gen_issue(rng, n, project, users)
        issue = {"id": rng.choice(self.live[tenant, "issue"].ids), "created": now}
        return (seed.gen_comment if entity == "comment" else seed.gen_worklog)(rng, n, issue, users)

    def _update(self, tenant: str, entity: str, now: datetime) -> Op:
        rng, users = self.rng, self.live[tenant, "user"].ids
        key = rng.choice(self.live[tenant, entity].ids)
        return Op(entity, tenant, key, "u", seed.gen_changes(rng, entity, users, now))

    def _delete(self, tenant: str, entity: str) -> Op:
        live = self.live[tenant, entity]
        key = self.rng.choice(live.ids)
        live.remove(key)
        if entity == "project":
            del self.project_keys[tenant, key]
        return Op(entity, tenant, key, "d")


class BatchWriter:
    """Runs each batch as one transaction on one connection, then reads the WAL bound."""

    def __init__(self, conn: Any, codec: Codec) -> None:
        # BEGIN/COMMIT are sent explicitly so the LSN read after COMMIT opens no transaction.
        conn.autocommit = True
        self.conn = conn
        self.sql = BatchSql(conn, codec, ENTITY_NAMES)

    def __call__(self, ops: Sequence[Op]) -> Commit:
        try:
            with self.conn.cursor() as cur:
                body = self.sql.text(cur, ops)
                # One round trip for the whole batch keeps 2,000 changes/s within reach.
                cur.execute(b"BEGIN;\n" + body + b";\nSELECT txid_current()")
                xid = cur.fetchone()[0]
                # the insert position: with asynchronous commit the write position may still
                # lie before the commit record, and the ledger promises an upper bound
                cur.execute("COMMIT; SELECT pg_current_wal_insert_lsn()::text")
                lsn = cur.fetchone()[0]
        except psycopg2.Error as exc:
            raise source_error(exc) from exc
        return Commit(int(xid), str(lsn), datetime.now(UTC))


def load_state(cur: Any, tenants: Sequence[str]) -> SourceState:
    """Live keys of the chosen tenants (or all), with one SELECT per table."""
    require_tables(cur)
    where, params = ("WHERE tenant_id = ANY(%s)", (list(tenants),)) if tenants else ("", ())
    state = SourceState(list(tenants))
    for entity in ENTITY_NAMES:
        extra = sql.SQL("key" if entity == "project" else "NULL")
        select = sql.SQL("SELECT tenant_id, id, {} FROM {} {} ORDER BY 1, 2")
        cur.execute(select.format(extra, table_name(entity), sql.SQL(where)), params)
        for tenant, key, project_key in cur.fetchall():
            state.keys.setdefault((tenant, entity), []).append(key)
            if project_key is not None:
                state.project_keys[tenant, key] = project_key
    if not state.tenants:
        state.tenants = sorted({tenant for tenant, _ in state.keys})
    if not state.tenants:
        raise SourceSchemaError(
            "source tables are empty; fill them first with: sluiceway source seed"
        )
    return state


# A name's JSON text; the tenants and entities are few, and json.dumps per line was a tenth of
# the churn's Python per change.
_json_text = functools.cache(json.dumps)


def ledger_lines(ops: Sequence[Op], commit: Commit) -> str:
    """One line per change, the text json.dumps would write for its dict."""
    tail = {"xid": commit.xid, "commit_lsn_upper": commit.lsn, "ts": commit.at.isoformat()}
    end = json.dumps(tail)[1:] + "\n"
    q = _json_text
    return "".join(
        f'{{"entity": {q(o.entity)}, "tenant_id": {q(o.tenant_id)}, "id": {o.id:d}, '
        f'"op": {q(o.op)}, "seq": {seq}, {end}'
        for seq, o in enumerate(ops)
    )


def run_churn(
    settings: ChurnSettings,
    planner: Planner,
    write: Callable[[Sequence[Op]], Commit],
    ledger: TextIO,
    on_batch: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> ChurnSummary:
    """Plan, commit and record batches on schedule; the ledger only ever holds commits."""
    summary = ChurnSummary(settings.rate, counts={e: dict.fromkeys(OPS, 0) for e in ENTITY_NAMES})

    def step() -> None:
        ops = planner.batch(settings.batch_size, datetime.now(UTC))
        commit = write(ops)
        ledger.write(ledger_lines(ops, commit))
        ledger.flush()
        summary.record(ops)
        if on_batch:
            on_batch(len(ops))

    summary.seconds = pace(settings, step, clock)
    return summary


def churn(
    pg: PostgresSettings,
    settings: ChurnSettings,
    codec: Codec,
    on_batch: Callable[[int], None] | None = None,
) -> ChurnSummary:
    """Churn the source as ``settings`` say, writing the ledger; return what was committed."""
    seed.check_demo_catalog(codec, "source churn")
    with closing(connect(pg)) as conn:
        writer = BatchWriter(conn, codec)
        try:
            with conn.cursor() as cur:
                state = load_state(cur, settings.tenants)
        except psycopg2.Error as exc:
            raise source_error(exc) from exc
        planner = Planner(random.Random(settings.seed), state)
        with open_ledger(settings.ledger) as ledger:
            return run_churn(settings, planner, writer, ledger, on_batch)
