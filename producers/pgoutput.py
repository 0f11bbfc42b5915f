"""Decoding PostgreSQL's built-in ``pgoutput`` plugin (protocol version 1) into committed
transactions, the same ``Transaction``/``Change``/``Heartbeat`` the wal2json decoder gives.

pgoutput needs no server extension: it sends binary messages, each a type byte and
big-endian fields. A Relation message (re-sent after every ALTER TABLE) gives a table's
columns in order; Insert, Update and Delete messages then give tuples by relation id, each
column ``n`` (NULL), ``u`` (an unchanged TOASTed value, not sent) or ``t`` (the value in
PostgreSQL's text output). Values are parsed as ``producers/tables.py`` says, shared with
the wal2json decoder, so both plugins put the same events on the change topics.

An update that leaves a TOASTed value unchanged must still land as a complete row. Where
the value is taken from, most exact first:

1. the old row of the update, which PostgreSQL sends whole (detoasted) when the table has
   REPLICA IDENTITY FULL: it is the value before the update, and the update left it alone;
2. an earlier change to the same row in the same transaction, which carried the value;
3. the source table itself, read by key while the update is decoded (``fetch``). Nothing
   else holds the value: the WAL record of the update does not, and the change topics can
   only be read by key by scanning a partition. The row read is the one current now, not
   necessarily the one this update wrote: they differ only when a later transaction,
   already committed and so decoded after this one, changed the same column. This event
   then carries that later value early; the later transaction's event carries it too. A
   row's last event, the one reconstruct keeps, is read after every change to the row
   committed, so it is exact; a run cut between the two transactions may show the later
   value early. A row deleted since cannot be read: that is refused with the fix
   (REPLICA IDENTITY FULL), never sent with a placeholder or without the column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sluiceway.common.catalog import Column
from sluiceway.common.codec import Codec, EventSchema
from sluiceway.producers.decoded import HEARTBEAT_PREFIX, Change, Heartbeat, Transaction
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.pgoutput_wire import UNCHANGED, Reader, Relation, RowPlan, parse_relation
from sluiceway.producers.schema_evolution import UncarriedChangeError, Version, live_version
from sluiceway.producers.tables import CapturedTable, relation_table

log = logging.getLogger("sluiceway.capture")

# (table, key values, column names) -> the columns' current values as text, or None when
# the row is gone. Called only for unchanged TOASTed values the message does not carry.
Fetch = Callable[[CapturedTable, dict[str, Any], Sequence[str]], dict[str, str | None] | None]
# (type oid, type modifier) -> the type as ``format_type`` prints it
TypeNames = Callable[[int, int], str]


@dataclass(frozen=True)
class Layout:
    """A captured relation: its table (bound to its schema) and how its rows are read."""

    table: CapturedTable
    plan: RowPlan
    qualified: str  # the table's, kept: it names the table in every change's bookkeeping


class Decoder:
    """Feeds on pgoutput messages; returns a Transaction at each commit."""

    def __init__(
        self, codec: Codec, fetch: Fetch | None = None, types: TypeNames | None = None
    ) -> None:
        """``types``: names column types, so that a table's changed columns make a new
        schema version of its entity; without it the catalog's columns are read as they are."""
        self.catalog = codec.catalog
        self.types = types
        # Per table (``schema.table``: a schema-per-tenant entity has one per tenant, each
        # altered on its own): its current envelope and columns, and the tables whose
        # columns changed beyond what is carried.
        self.versions: dict[str, EventSchema | None] = {}
        self.columns: dict[str, tuple[Column, ...]] = {}
        self.stopped: set[str] = set()
        self.relations: dict[int, Relation] = {}
        self._layouts: dict[int, Layout] = {}  # per captured relation
        self.fetch = fetch
        self.current: Transaction | None = None
        self._rows: dict[tuple[str, str, Any], dict[str, Any]] = {}  # this transaction's rows

    def feed(self, payload: bytes) -> Transaction | Heartbeat | None:
        reader = Reader(payload)
        kind = reader.byte()
        if kind == "B":
            reader.int64()  # the commit's LSN, sent again with the commit
            commit_ts = reader.timestamp()
            self.current = Transaction(reader.uint32(), 0, commit_ts)
            self._rows.clear()
        elif kind == "C":
            reader.int8()
            done, self.current = self._require_txn(kind), None
            done.commit_lsn = reader.int64()
            return done
        elif kind == "R":
            relid, relation = parse_relation(reader)
            self.relations[relid] = relation
            self._layouts.pop(relid, None)
            table = relation_table(self.catalog, relation.schema, relation.name)
            version = None if table is None else self._version(table, relation)
            if table is not None and version is not None:
                # the version's table is the entity's; this relation is one schema's of it
                bound = replace(version.table, schema=table.schema, tenant_id=table.tenant_id)
                self._layouts[relid] = Layout(bound, _plan(bound, relation), bound.qualified)
                self.versions[table.qualified] = version.schema
        elif kind in "IUD":
            self._row_message(kind, reader)
        elif kind == "T":
            self._truncate(reader)
        elif kind == "M":
            return self._message(reader)
        elif kind not in "YO":  # type names and origins: columns are mapped by name
            raise SourceSchemaError(
                f"pgoutput sent message type {kind!r}, which protocol version 1 does not have"
            )
        return None

    def _version(self, table: CapturedTable, relation: Relation) -> Version | None:
        """The schema version the relation's columns make; None when capture of the table
        stops (it was stopped before, or its columns changed beyond what is carried)."""
        if table.qualified in self.stopped:
            return None
        if self.types is None:
            return Version(table, (), None)
        names = self.types
        live = [
            (c, names(oid, mod))
            for c, oid, mod in zip(relation.columns, relation.type_oids, relation.type_mods,
                                   strict=True)
        ]  # fmt: skip
        try:
            before = self.columns.get(table.qualified)
            version = live_version(self.catalog, table.entity, live, before)
        except UncarriedChangeError as exc:
            self.stopped.add(table.qualified)
            log.error("capture of %s stopped, the other tables go on: %s", table.qualified, exc)
            return None
        self.columns[table.qualified] = version.columns
        return version

    def _require_txn(self, kind: str) -> Transaction:
        if self.current is None:
            raise SourceSchemaError(f"pgoutput sent {kind!r} outside a transaction")
        return self.current

    @staticmethod
    def _message(reader: Reader) -> Heartbeat | None:
        reader.int8()  # transactional or not: a heartbeat proves progress either way
        lsn = reader.int64()
        return Heartbeat(lsn) if reader.string() == HEARTBEAT_PREFIX else None

    def _truncate(self, reader: Reader) -> None:
        count = reader.int32()
        reader.int8()  # CASCADE / RESTART IDENTITY
        relations = [self._relation(reader.uint32()) for _ in range(count)]
        captured = [
            r.qualified for r in relations if relation_table(self.catalog, r.schema, r.name)
        ]
        if captured:
            raise SourceSchemaError(
                f"TRUNCATE of {', '.join(captured)} cannot be captured as row changes; "
                "re-create the slot to take a new snapshot"
            )

    def _relation(self, relid: int) -> Relation:
        relation = self.relations.get(relid)
        if relation is None:
            raise SourceSchemaError(f"pgoutput sent a change to relation {relid} before its schema")
        return relation

    def _row_message(self, kind: str, reader: Reader) -> None:
        txn = self._require_txn(kind)
        relid = reader.uint32()
        self._relation(relid)
        layout = self._layouts.get(relid)
        if layout is None:  # a publication the user made may cover more tables
            return
        marker = reader.byte()
        if kind == "D":
            if marker not in "KO":
                raise SourceSchemaError(f"pgoutput sent a delete without its old row ({marker!r})")
            txn.changes.append(self._delete(layout, reader.row(layout.plan)[0]))
            return
        # The old row is read only if the new one lacks a TOASTed value: most updates of a
        # REPLICA IDENTITY FULL table never need it.
        old_at = reader.skip_tuple() if marker in "KO" else None
        if marker in "KO":
            reader.byte()  # 'N': the new tuple follows
        values, unchanged = reader.row(layout.plan)
        if unchanged:
            names = [n for n, v in values.items() if v is UNCHANGED]
            old = _old_row(reader, layout.plan, old_at) if marker == "O" else None
            values.update(self._fill(layout, values, names, old))
        txn.changes.append(self._upsert(layout, values, kind))

    def _delete(self, layout: Layout, values: dict[str, Any]) -> Change:
        table = layout.table
        tenant, key = table.tenant_of(values), _row_key(table, values)
        if tenant is None or None in key:
            names = " and ".join(table.row_key)
            raise SourceSchemaError(
                f"delete from {table.qualified} carries no {names}: "
                f"the replica identity must cover them; run: ALTER TABLE {table.qualified} "
                "REPLICA IDENTITY FULL (or make them the primary key)"
            )
        self._rows.pop((layout.qualified, tenant, key), None)
        entity_id, typed = table.identity(values)
        return Change(
            table.entity, tenant, entity_id, "d", None, typed, self.versions.get(layout.qualified)
        )

    def _upsert(self, layout: Layout, values: dict[str, Any], kind: str) -> Change:
        table = layout.table
        tenant = table.tenant_of(values)
        self._rows[layout.qualified, tenant, _row_key(table, values)] = values
        row = dict(values)  # the captured columns but the tenant's
        if table.tenant is not None:
            del row[table.tenant]
        entity_id, key = table.identity(values)
        return Change(
            table.entity,
            tenant,
            entity_id,
            "c" if kind == "I" else "u",
            row,
            key,
            self.versions.get(layout.qualified),
        )

    def _fill(
        self, layout: Layout, values: dict[str, Any], names: list[str],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:  # fmt: skip
        """The unchanged TOASTed columns' values, from the most exact place that has them."""
        table = layout.table
        if old is not None:  # REPLICA IDENTITY FULL: the whole old row, detoasted
            before = old
        else:
            cached = (layout.qualified, table.tenant_of(values), _row_key(table, values))
            before = self._rows.get(cached, {})
        found = {n: before[n] for n in names if n in before and before[n] is not UNCHANGED}
        rest = [n for n in names if n not in found]
        if rest:
            found.update(self._read_source(table, values, rest))
        return found

    def _read_source(
        self, table: CapturedTable, values: dict[str, Any], names: list[str]
    ) -> dict[str, Any]:
        key = {k: values[k] for k in table.row_key}
        current = self.fetch(table, key, names) if self.fetch else None
        if current is None:
            where = "; the row has been deleted since" if self.fetch else ""
            raise SourceSchemaError(
                f"update of {table.qualified} {key} left TOASTed columns {names} unchanged "
                f"and PostgreSQL did not send them{where}; run: ALTER TABLE {table.qualified} "
                "REPLICA IDENTITY FULL, then re-create the slot"
            )
        return {n: table.parse(n, current[n]) if current[n] is not None else None for n in names}


def _row_key(table: CapturedTable, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(map(values.__getitem__, table.key))


def _old_row(reader: Reader, plan: RowPlan, at: int | None) -> dict[str, Any] | None:
    """The old row of an update, read where ``skip_tuple`` stepped over it."""
    if at is None:
        return None
    reader.at = at
    return reader.row(plan)[0]


def _plan(table: CapturedTable, relation: Relation) -> RowPlan:
    """How the relation's tuples are read: the captured columns, by name; a catalog column
    the table lacks is refused by name, columns the catalog does not list are skipped."""
    wanted = (*table.tenant_columns, *table.columns)
    missing = [n for n in wanted if n not in relation.columns]
    if missing:
        raise SourceSchemaError(
            f"{table.qualified} lacks captured columns {missing} of the catalog's entity "
            f"{table.entity!r}; add them to the table or take them out of the catalog"
        )
    return RowPlan.of(table, relation.columns, wanted)
