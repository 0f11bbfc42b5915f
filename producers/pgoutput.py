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
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sluiceway.common.catalog import Column
from sluiceway.common.codec import Codec, EventSchema
from sluiceway.producers.decoded import HEARTBEAT_PREFIX, Change, Heartbeat, Transaction
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.schema_evolution import UncarriedChangeError, Version, live_version
from sluiceway.producers.tables import CapturedTable, relation_table

log = logging.getLogger("sluiceway.capture")

UNCHANGED = object()  # a TOASTed value the update left as it was; PostgreSQL did not send it
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# (table, key values, column names) -> the columns' current values as text, or None when
# the row is gone. Called only for unchanged TOASTed values the message does not carry.
Fetch = Callable[[CapturedTable, dict[str, Any], Sequence[str]], dict[str, str | None] | None]
# (type oid, type modifier) -> the type as ``format_type`` prints it
TypeNames = Callable[[int, int], str]


_INT16, _INT32 = struct.Struct(">h"), struct.Struct(">i")
_TEXT, _NULL, _UNCHANGED_TOAST = b"t"[0], b"n"[0], b"u"[0]  # TupleData column kinds


class Reader:
    """Big-endian fields of one pgoutput message, read front to back."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def _unpack(self, fmt: str, size: int) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return int(value)

    def int8(self) -> int:
        return self._unpack(">b", 1)

    def int16(self) -> int:
        return self._unpack(">h", 2)

    def int32(self) -> int:
        return self._unpack(">i", 4)

    def uint32(self) -> int:
        return self._unpack(">I", 4)

    def int64(self) -> int:
        return self._unpack(">q", 8)

    def byte(self) -> str:
        value = chr(self.data[self.at])
        self.at += 1
        return value

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        value = self.data[self.at : end].decode()
        self.at = end + 1
        return value

    def raw(self, size: int) -> bytes:
        value = self.data[self.at : self.at + size]
        self.at += size
        return bytes(value)

    def timestamp(self) -> datetime:
        return _PG_EPOCH + timedelta(microseconds=self.int64())

    def tuple(self) -> list[Any]:
        """TupleData: per column None (NULL), UNCHANGED, or the text of its value.

        One loop over the bytes with no call per column: streaming capture spent half its
        time here when each field was read through the methods above."""
        data, at = self.data, self.at
        (count,) = _INT16.unpack_from(data, at)
        at += 2
        values: list[Any] = []
        append, length = values.append, _INT32.unpack_from
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == _TEXT:
                (size,) = length(data, at)
                at += 4
                append(str(data[at : at + size], "utf-8"))
                at += size
            elif kind == _NULL:
                append(None)
            elif kind == _UNCHANGED_TOAST:
                append(UNCHANGED)
            else:
                raise SourceSchemaError(
                    f"pgoutput sent a column of kind {chr(kind)!r}; expected n, u or t"
                )
        self.at = at
        return values


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]
    type_mods: tuple[int, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def parse_relation(reader: Reader) -> tuple[int, Relation]:
    relid, schema, name = reader.uint32(), reader.string(), reader.string()
    reader.int8()  # replica identity setting: what the old tuple carries shows it anyway
    names, oids, mods = [], [], []
    for _ in range(reader.int16()):
        reader.int8()  # flags: part of the key; the key is known by name
        names.append(reader.string())
        oids.append(reader.uint32())
        mods.append(reader.int32())
    return relid, Relation(schema, name, tuple(names), tuple(oids), tuple(mods))


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
        # per captured relation: its table and (position, column) of each column captured
        self._layouts: dict[int, tuple[CapturedTable, tuple[tuple[int, str], ...]]] = {}
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
                self._layouts[relid] = (bound, _layout(bound, relation))
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
        marker = reader.byte()
        old: list[Any] | None = None
        if marker in "KO":
            old = reader.tuple()
            if kind == "U":
                reader.byte()  # 'N': the new tuple follows
        layout = self._layouts.get(relid)
        if layout is None:  # a publication the user made may cover more tables
            return
        if kind == "D":
            assert old is not None
            txn.changes.append(self._delete(layout, old))
            return
        new = reader.tuple()
        txn.changes.append(self._upsert(layout, new, old if marker == "O" else None, kind))

    @staticmethod
    def _convert(
        table: CapturedTable, layout: tuple[tuple[int, str], ...], values: list[Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fast = table.fast
        for at, name in layout:
            value = values[at]
            if value is None or value is UNCHANGED:
                out[name] = value
            else:
                ready, parse = fast[name]
                out[name] = value if type(value) is ready else parse(value)
        return out

    def _delete(self, layout: tuple[CapturedTable, Layout], old: list[Any]) -> Change:
        table, at = layout
        values = self._convert(table, at, old)
        tenant, key = table.tenant_of(values), _row_key(table, values)
        if tenant is None or None in key:
            names = " and ".join(table.row_key)
            raise SourceSchemaError(
                f"delete from {table.qualified} carries no {names}: "
                f"the replica identity must cover them; run: ALTER TABLE {table.qualified} "
                "REPLICA IDENTITY FULL (or make them the primary key)"
            )
        self._rows.pop((table.qualified, tenant, key), None)
        entity_id, typed = table.identity(values)
        return Change(
            table.entity, tenant, entity_id, "d", None, typed, self.versions.get(table.qualified)
        )

    def _upsert(
        self, layout: tuple[CapturedTable, Layout], new: list[Any], old: list[Any] | None,
        kind: str,
    ) -> Change:  # fmt: skip
        table, at = layout
        values = self._convert(table, at, new)
        unchanged = [n for n, v in values.items() if v is UNCHANGED]
        if unchanged:
            values.update(self._fill(layout, values, unchanged, old))
        tenant = table.tenant_of(values)
        self._rows[table.qualified, tenant, _row_key(table, values)] = values
        row = dict(values)  # the layout's columns: the tenant, then the catalog's, in order
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
            self.versions.get(table.qualified),
        )

    def _fill(
        self, layout: tuple[CapturedTable, Layout], values: dict[str, Any], names: list[str],
        old: list[Any] | None,
    ) -> dict[str, Any]:  # fmt: skip
        """The unchanged TOASTed columns' values, from the most exact place that has them."""
        table, at = layout
        if old is not None:  # REPLICA IDENTITY FULL: the whole old row, detoasted
            before = self._convert(table, at, old)
        else:
            cached = (table.qualified, table.tenant_of(values), _row_key(table, values))
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


Layout = tuple[tuple[int, str], ...]


def _row_key(table: CapturedTable, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[k] for k in table.key)


def _layout(table: CapturedTable, relation: Relation) -> Layout:
    """(position, name) of each captured column in the relation's tuples; a catalog column
    the table lacks is refused by name, columns the catalog does not list are skipped."""
    at = {name: i for i, name in enumerate(relation.columns)}
    wanted = (*table.tenant_columns, *table.columns)
    missing = [n for n in wanted if n not in at]
    if missing:
        raise SourceSchemaError(
            f"{table.qualified} lacks captured columns {missing} of the catalog's entity "
            f"{table.entity!r}; add them to the table or take them out of the catalog"
        )
    return tuple((at[n], n) for n in wanted)
