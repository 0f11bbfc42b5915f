"""The SQL of one Jira churn batch: a few multi-row statements instead of one per change.

The source parses and plans every statement it is sent; at one statement per change that
cost its backend about as much CPU as the capture the bench measures, on the same two cores.
So a batch's changes are grouped into runs that one statement each can make (an INSERT of
many rows, a DELETE of many keys, an UPDATE ... FROM (VALUES ...) of rows that change the
same columns), and the text of each kind of statement is built once, not per change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.devstack.seed import Row
from sluiceway.producers.source import column_list, columns, table_name

# Columns that take the server's now() on insert: the transaction's time, closer to the
# commit than any client clock. An update always sets ``updated`` so.
SERVER_NOW_ON_INSERT = frozenset({"created", "updated"})

# The name of the VALUES column holding which columns a row's update sets (a bit per column):
# a space keeps it from meeting an Avro field's name.
MASK = "set mask"


class Change(Protocol):
    """What the SQL reads of a planned change (``sluiceway.devstack.churn.Op``)."""

    @property
    def entity(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def id(self) -> int: ...

    @property
    def op(self) -> str: ...

    @property
    def values(self) -> Row | None: ...


def runs(changes: Sequence[Change]) -> list[list[Change]]:
    """The changes as runs of one table and kind each, in the order their statements must run.

    One statement changes a row at most once, and a row changed twice in a batch must see its
    changes in planned order: so each change goes into the layer after its row's previous
    change, and each layer holds one run per table and kind. A layer's rows all differ and the
    demo's tables have no foreign keys, so the order of a layer's runs does not matter; the
    transaction commits them all at once either way."""
    layers: list[dict[tuple[str, str], list[Change]]] = []
    last: dict[tuple[str, str, int], int] = {}
    for change in changes:
        row = (change.entity, change.tenant_id, change.id)
        layer = last.get(row, -1) + 1
        last[row] = layer
        if layer == len(layers):
            layers.append({})
        layers[layer].setdefault((change.entity, change.op), []).append(change)
    return [run for layer in layers for run in layer.values()]


class BatchSql:
    """Turns a batch of changes into one SQL text, with the statement templates cached."""

    def __init__(self, conn: Any, codec: Codec, entities: Sequence[str]) -> None:
        self.conn = conn
        self.types = {e: {c.name: c.sql_type for c in columns(codec, e)} for e in entities}
        # the columns whose values an insert sends, in the table's order
        self.inserted = {
            e: [c for c in cols if c not in SERVER_NOW_ON_INSERT] for e, cols in self.types.items()
        }
        # (head, one row's marks, tail) per (entity, op, columns an update sets): a statement
        # is head, rows, tail.
        self.templates: dict[tuple[str, str, tuple[str, ...]], tuple[str, str, str]] = {}

    def text(self, cur: Any, changes: Sequence[Change]) -> bytes:
        """The statements of ``changes``, separated by semicolons, with values quoted."""
        statements: list[str] = []
        params: list[Any] = []
        for run in runs(changes):
            entity, op = run[0].entity, run[0].op
            names = updated_columns(run) if op == "u" else ()
            head, marks, tail = self._template(entity, op, names)
            statements.append(head + ", ".join([marks] * len(run)) + tail)
            for change in run:
                params += self._params(change, names)
        # One mogrify for the batch: per statement, its fixed cost was as much as the quoting.
        return bytes(cur.mogrify(";\n".join(statements), params))

    def _params(self, change: Change, names: tuple[str, ...]) -> list[Any]:
        if change.op == "d":
            return [change.tenant_id, change.id]
        values = change.values or {}
        if change.op == "c":
            return [change.tenant_id, *(values[c] for c in self.inserted[change.entity])]
        mask = sum(1 << bit for bit, c in enumerate(names) if c in values)
        return [change.tenant_id, change.id, mask, *(values.get(c) for c in names)]

    def _template(self, entity: str, op: str, names: tuple[str, ...]) -> tuple[str, str, str]:
        key = (entity, op, names)
        template = self.templates.get(key)
        if template is None:
            build = {"c": self._insert, "d": self._delete, "u": self._update}[op]
            template = self.templates[key] = build(entity, names)
        return template

    def _text(self, composed: sql.Composable) -> str:
        return composed.as_string(self.conn)

    def _insert(self, entity: str, _names: tuple[str, ...]) -> tuple[str, str, str]:
        names = ["tenant_id", *self.types[entity]]
        head = sql.SQL("INSERT INTO {} ({}) VALUES ").format(table_name(entity), column_list(names))
        marks = ", ".join("now()" if c in SERVER_NOW_ON_INSERT else "%s" for c in names)
        return self._text(head), f"({marks})", ""

    def _delete(self, entity: str, _names: tuple[str, ...]) -> tuple[str, str, str]:
        head = sql.SQL("DELETE FROM {} WHERE (tenant_id, id) IN (VALUES ").format(
            table_name(entity)
        )
        return self._text(head), "(%s, %s)", ")"

    def _update(self, entity: str, names: tuple[str, ...]) -> tuple[str, str, str]:
        """Updates of different columns share a statement: a column a row's update does not
        set (its bit clear in the mask) keeps its value. That writes the same row version as
        an UPDATE of the row's own columns: a new version of the whole row either way."""
        sets = [self._set(entity, c, bit) for bit, c in enumerate(names)]
        sets.append(sql.SQL("updated = now()"))
        head = sql.SQL("UPDATE {} AS r SET {} FROM (VALUES ").format(
            table_name(entity), sql.SQL(", ").join(sets)
        )
        tail = sql.SQL(") AS v ({}) WHERE r.tenant_id = v.tenant_id AND r.id = v.id").format(
            column_list(["tenant_id", "id", MASK, *names])
        )
        marks = ", ".join(["%s"] * (len(names) + 3))
        return self._text(head), f"({marks})", self._text(tail)

    def _set(self, entity: str, column: str, bit: int) -> sql.Composable:
        # VALUES types a column from its literals (all NULL: text), so a value is cast to its
        # column's type where it is assigned.
        case = sql.SQL("{} = CASE WHEN (v.{} & {}) <> 0 THEN CAST(v.{} AS {}) ELSE r.{} END")
        name, cast = sql.Identifier(column), sql.SQL(self.types[entity][column])
        return case.format(name, sql.Identifier(MASK), sql.Literal(1 << bit), name, cast, name)


def updated_columns(run: Sequence[Change]) -> tuple[str, ...]:
    """Every column an update of ``run`` sets besides ``updated`` (which takes the server's
    now()), sorted so that runs setting the same columns share a template."""
    names = {c for change in run for c in change.values or {}}
    names.discard("updated")
    return tuple(sorted(names))
