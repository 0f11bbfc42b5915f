"""``sluiceway source churn --catalog FILE``: paced changes to any catalog's tables, ledgered.

The same pacing, batches and ledger as the Jira churn (both in ``sluiceway.devstack.churn_run``),
with rows from ``catalog_rows``: inserts reference live parents of their tenant, updates change
non-key columns of any type (NULLs and edge values included; the ``updated`` column takes
the server's ``now()``), and deletes take only rows no live row references, so every
reference stays valid. Each ledger line's ``id`` is the row's record key (the key without
the tenant column) as a JSON array, in the catalog's key order: ``[42]``, or
``["5b0e...", 3]`` for a composite key.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg2
from psycopg2 import sql

from sluiceway.common.catalog import Catalog
from sluiceway.common.settings import PostgresSettings
from sluiceway.devstack.catalog_rows import (
    Key,
    KeyPool,
    NoParentError,
    Row,
    RowMaker,
    Tenants,
    require_mapped,
)
from sluiceway.devstack.catalog_seed import table_id
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
from sluiceway.producers.db import connect
from sluiceway.producers.errors import SourceSchemaError


@dataclass(frozen=True)
class CatalogOp:
    """One change: the whole row for ``c``, the changed columns for ``u``, nothing for ``d``."""

    entity: str
    tenant_id: str
    key: Key
    op: str
    values: Row | None = None


@dataclass
class CatalogState:
    """The live keys of the source, and how many live rows reference each of them."""

    pools: dict[tuple[str, str], KeyPool] = field(default_factory=dict)
    children: Counter[tuple[str, str, Key]] = field(default_factory=Counter)
    parents: dict[tuple[str, str, Key], list[tuple[str, Key]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    """The next counter key per entity: above every integer key seen, in any tenant."""

    def add(self, tenant: str, entity: str, key: Key, parents: list[tuple[str, Key]]) -> None:
        self.pools.setdefault((tenant, entity), KeyPool()).add(key)
        self.parents[tenant, entity, key] = parents
        for parent, parent_key in parents:
            self.children[tenant, parent, parent_key] += 1
        top = max((_counter_of(entity, part) for part in key), default=0)
        self.counters[entity] = max(self.counters.get(entity, 1), top + 1)


def _counter_of(entity: str, part: Any) -> int:
    """The counter in a key value: an integer key, or the digits of a text key the row maker
    drew (``<entity>-<counter>``). Not the digits ending any text: a random uuid whose last
    group is all decimal digits (one in about 280) would push the counter past an integer
    column's range, and the next insert of a composite key (the help desk's ``reply.n``)
    would be refused by the source."""
    if isinstance(part, int):
        return part
    digits = re.fullmatch(rf"{re.escape(entity)}-(\d+)", str(part))
    return int(digits.group(1)) if digits else 0


class CatalogPlanner:
    """Chooses changes from a seeded RNG, keeping references valid as it goes."""

    def __init__(
        self, rng: random.Random, catalog: Catalog, tenants: Tenants, state: CatalogState
    ) -> None:
        self.rng, self.tenants = rng, tenants
        self.makers = {name: RowMaker(catalog, name) for name in catalog.order}
        self.state = state
        for tenant in tenants.texts:
            for name in catalog.order:
                state.pools.setdefault((tenant, name), KeyPool())

    def batch(self, size: int, now: datetime) -> list[CatalogOp]:
        return [self.next_op() for _ in range(size)]

    def next_op(self) -> CatalogOp:
        rng = self.rng
        for _ in range(MAX_DRAWS):
            tenant = rng.choice(self.tenants.texts)
            entity = rng.choice(tuple(self.makers))
            kind = rng.choices(OPS, cum_weights=OP_CUM)[0]
            planned = {"c": self._insert, "u": self._update, "d": self._delete}[kind](
                tenant, entity
            )
            if planned is not None:
                return planned
        raise SourceSchemaError(
            "churn found nothing it could change; fill the source first with: "
            "sluiceway source seed --catalog FILE"
        )

    def _pools(self, tenant: str) -> dict[str, KeyPool]:
        return {name: self.state.pools[tenant, name] for name in self.makers}

    def _insert(self, tenant: str, entity: str) -> CatalogOp | None:
        maker, state = self.makers[entity], self.state
        counter = state.counters.get(entity, 1)
        try:
            row = maker.make(self.rng, self.rng.randrange(10), counter, self._pools(tenant))
        except NoParentError:
            return None
        key = maker.key_of(row)
        if key in state.pools[tenant, entity]:
            return None
        state.counters[entity] = counter + 1
        state.add(tenant, entity, key, maker.parents_of(row))
        return CatalogOp(entity, tenant, key, "c", row)

    def _update(self, tenant: str, entity: str) -> CatalogOp | None:
        maker, pool = self.makers[entity], self.state.pools[tenant, entity]
        columns = [c for c in maker.plain if c != maker.entity.updated]
        if not pool or not columns:
            return None
        key = self.rng.choice(pool.keys)
        chosen = self.rng.sample(columns, min(len(columns), self.rng.randint(1, 2)))
        values = {c: maker.cell(self.rng, c, self.rng.randrange(10)) for c in chosen}
        return CatalogOp(entity, tenant, key, "u", values)

    def _delete(self, tenant: str, entity: str) -> CatalogOp | None:
        pool, state = self.state.pools[tenant, entity], self.state
        for _ in range(5 if pool else 0):
            key = self.rng.choice(pool.keys)
            if state.children[tenant, entity, key] == 0:
                pool.remove(key)
                for parent, parent_key in state.parents.pop((tenant, entity, key), ()):
                    state.children[tenant, parent, parent_key] -= 1
                return CatalogOp(entity, tenant, key, "d")
        return None


class CatalogWriter:
    """Runs each batch as one transaction on one connection, then reads the WAL bound."""

    def __init__(self, conn: Any, catalog: Catalog, tenants: Tenants) -> None:
        conn.autocommit = True  # BEGIN/COMMIT are explicit, as in the Jira churn
        self.conn, self.catalog, self.tenants = conn, catalog, tenants
        self.makers = {name: RowMaker(catalog, name) for name in catalog.order}

    def _cast(self, type_name: str) -> sql.Composable:
        return sql.SQL(f"CAST(%s AS {type_name})")  # type names checked by RowMaker (pgtypes)

    def _where(self, op: CatalogOp) -> tuple[sql.Composable, list[Any]]:
        entity = self.catalog.entity(op.entity)
        maker = self.makers[op.entity]
        parts: list[sql.Composable] = []
        params: list[Any] = []
        if entity.tenant.column is not None:
            column = sql.Identifier(entity.tenant.column)
            parts.append(sql.SQL("{} = {}").format(column, self._cast(entity.tenant.type)))
            params.append(op.tenant_id)
        for name, value in zip(entity.record_key, op.key, strict=True):
            cast = self._cast(entity.column(name).type)
            parts.append(sql.SQL("{} = {}").format(sql.Identifier(name), cast))
            params.append(maker.texts({name: value})[name])
        return sql.SQL(" AND ").join(parts), params

    def _set(self, op: CatalogOp) -> tuple[list[sql.Composable], list[sql.Composable], list[Any]]:
        """(columns, values, params) of an insert or update; ``updated`` is the server's now."""
        entity = self.catalog.entity(op.entity)
        texts = self.makers[op.entity].texts(op.values or {})
        names: list[sql.Composable] = []
        marks: list[sql.Composable] = []
        params: list[Any] = []
        if op.op == "c" and entity.tenant.column is not None:
            names.append(sql.Identifier(entity.tenant.column))
            marks.append(self._cast(entity.tenant.type))
            params.append(op.tenant_id)
        for name, text in texts.items():
            if name != entity.updated:
                names.append(sql.Identifier(name))
                marks.append(self._cast(entity.column(name).type))
                params.append(text)
        if entity.updated is not None:
            names.append(sql.Identifier(entity.updated))
            marks.append(sql.SQL(f"CAST(now() AS {entity.column(entity.updated).type})"))
        return names, marks, params

    def _statement(self, cur: Any, op: CatalogOp) -> bytes:
        table = table_id(self.tenants, self.catalog, op.entity, op.tenant_id)
        if op.op == "c":
            names, marks, params = self._set(op)
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})")
            joined = (sql.SQL(", ").join(names), sql.SQL(", ").join(marks))
            return bytes(cur.mogrify(insert.format(table, *joined), params))
        where, keys = self._where(op)
        if op.op == "d":
            return bytes(cur.mogrify(sql.SQL("DELETE FROM {} WHERE {}").format(table, where), keys))
        names, marks, params = self._set(op)
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(n, m) for n, m in zip(names, marks, strict=True)
        )
        update = sql.SQL("UPDATE {} SET {} WHERE {}").format(table, sets, where)
        return bytes(cur.mogrify(update, [*params, *keys]))

    def __call__(self, ops: Sequence[CatalogOp]) -> Commit:
        try:
            with self.conn.cursor() as cur:
                body = b";\n".join(self._statement(cur, op) for op in ops)
                cur.execute(b"BEGIN;\n" + body + b";\nSELECT txid_current()")
                xid = cur.fetchone()[0]
                # the insert position: an upper bound of the commit record, as in the Jira churn
                cur.execute("COMMIT; SELECT pg_current_wal_insert_lsn()::text")
                lsn = cur.fetchone()[0]
        except psycopg2.Error as exc:
            raise source_error(exc) from exc
        return Commit(int(xid), str(lsn), datetime.now(UTC))


def _tenant_order(text: str) -> tuple[bool, int, str]:
    return (not text.isdigit(), int(text) if text.isdigit() else 0, text)


def _require(cur: Any, target: sql.Identifier) -> None:
    cur.execute("SELECT to_regclass(%s)", (target.as_string(cur),))
    if cur.fetchone()[0] is None:
        raise SourceSchemaError(
            f"source table {target.as_string(cur)} does not exist; create and fill it first "
            "with: sluiceway source seed --catalog FILE"
        )


def find_tenants(cur: Any, catalog: Catalog) -> list[str]:
    """Every tenant with a row in a tenant-column table or a schema of its own."""
    found: set[str] = set()
    cur.execute("SELECT nspname FROM pg_namespace")
    schemas = [name for (name,) in cur.fetchall()]
    for entity in catalog.entities.values():
        if entity.tenant.column is None:
            found |= {t for s in schemas if (t := entity.tenant.tenant_of_schema(s)) is not None}
            continue
        target = sql.Identifier(*entity.table.split(".", 1))
        _require(cur, target)
        select = sql.SQL("SELECT DISTINCT {}::text FROM {}")
        cur.execute(select.format(sql.Identifier(entity.tenant.column), target))
        found |= {tenant for (tenant,) in cur.fetchall()}
    return sorted(found, key=_tenant_order)


def load_state(cur: Any, catalog: Catalog, tenants: Tenants) -> CatalogState:
    """The live keys (and references) of ``tenants``, one SELECT per table."""
    state = CatalogState()
    for name in catalog.order:
        entity, maker = catalog.entity(name), RowMaker(catalog, name)
        columns = list(
            dict.fromkeys([*entity.record_key, *(c for r in entity.references for c in r.columns)])
        )
        texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns)
        per_schema = entity.tenant.column is None
        for tenant in tenants.texts if per_schema else tenants.texts[:1]:
            target = table_id(tenants, catalog, name, tenant)
            _require(cur, target)
            if per_schema:
                cur.execute(sql.SQL("SELECT %s, {} FROM {}").format(texts, target), (tenant,))
            else:
                select = sql.SQL("SELECT {col}::text, {} FROM {} WHERE {col}::text = ANY(%s)")
                column = sql.Identifier(str(entity.tenant.column))
                cur.execute(select.format(texts, target, col=column), (list(tenants.texts),))
            for found, *cells in cur.fetchall():
                row = {
                    c: None if t is None else maker.parse_key(c, t)
                    for c, t in zip(columns, cells, strict=True)
                }
                state.add(found, name, maker.key_of(row), maker.parents_of(row))
    return state


def ledger_lines(ops: Sequence[CatalogOp], commit: Commit) -> str:
    tail = {"xid": commit.xid, "commit_lsn_upper": commit.lsn, "ts": commit.at.isoformat()}
    rows = (
        {"entity": o.entity, "tenant_id": o.tenant_id, "id": list(o.key), "op": o.op} for o in ops
    )
    return "".join(json.dumps({**row, "seq": seq, **tail}) + "\n" for seq, row in enumerate(rows))


def run_catalog_churn(
    settings: ChurnSettings,
    planner: CatalogPlanner,
    write: Callable[[Sequence[CatalogOp]], Commit],
    ledger: TextIO,
    on_batch: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> ChurnSummary:
    """Plan, commit and record batches on schedule; the ledger only ever holds commits."""
    counts = {name: dict.fromkeys(OPS, 0) for name in planner.makers}
    summary = ChurnSummary(settings.rate, counts=counts)

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


def churn_catalog(
    pg: PostgresSettings,
    settings: ChurnSettings,
    catalog: Catalog,
    on_batch: Callable[[int], None] | None = None,
) -> ChurnSummary:
    """Churn the catalog's tables as ``settings`` say, writing the ledger."""
    require_mapped(catalog)
    given = Tenants.of(catalog, settings.tenants) if settings.tenants else None
    with closing(connect(pg)) as conn:
        conn.autocommit = True  # before any query: the writer sends BEGIN/COMMIT itself
        try:
            with conn.cursor() as cur:
                tenants = given or Tenants.of(catalog, find_tenants(cur, catalog))
                if not tenants.texts:
                    raise SourceSchemaError(
                        "source tables are empty; fill them first with: "
                        "sluiceway source seed --catalog FILE"
                    )
                state = load_state(cur, catalog, tenants)
        except psycopg2.Error as exc:
            raise source_error(exc) from exc
        writer = CatalogWriter(conn, catalog, tenants)
        planner = CatalogPlanner(random.Random(settings.seed), catalog, tenants, state)
        with open_ledger(settings.ledger) as ledger:
            return run_catalog_churn(settings, planner, writer, ledger, on_batch)
