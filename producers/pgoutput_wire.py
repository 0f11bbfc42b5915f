"""pgoutput's wire format (protocol version 1): big-endian fields, Relation messages, and
TupleData read straight into a captured table's typed values.

Streaming capture reads every column of every change, so a row is read in one loop over
its bytes with each column's parser chosen once per relation (``RowPlan``): per-field method
calls, a second pass converting text to values, and a dispatch on each value's type were
most of capture's CPU time. A column capture does not keep is stepped over undecoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.tables import CapturedTable

UNCHANGED = object()  # a TOASTed value the update left as it was; PostgreSQL did not send it
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_INT16, _INT32 = struct.Struct(">h"), struct.Struct(">i")
_TEXT, _NULL, _UNCHANGED_TOAST = b"t"[0], b"n"[0], b"u"[0]  # TupleData column kinds
Parser = Callable[[str], Any]


def _kind_error(kind: int) -> SourceSchemaError:
    return SourceSchemaError(f"pgoutput sent a column of kind {chr(kind)!r}; expected n, u or t")


@dataclass(frozen=True)
class RowPlan:
    """How a relation's tuples are read: per column of the relation, in its order, its
    captured name (None: not captured) and the parser of its text (None: the text is the
    value)."""

    columns: tuple[tuple[str | None, Parser | None], ...]

    @classmethod
    def of(cls, table: CapturedTable, columns: Sequence[str], wanted: Sequence[str]) -> RowPlan:
        """``wanted`` columns of ``table`` from a relation of ``columns``. The parser is
        skipped where the text already is the value, as ``CapturedTable.parse`` does."""
        keep = set(wanted)
        names = tuple(c if c in keep else None for c in columns)
        parsers = []
        for name in names:
            ready, parse = table.fast[name] if name is not None else (str, str)
            parsers.append(None if ready is str else parse)
        return cls(tuple(zip(names, parsers, strict=True)))


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

    def row(self, plan: RowPlan) -> tuple[dict[str, Any], bool]:
        """TupleData as the plan's columns' values (None for NULL, UNCHANGED for a TOASTed
        value not sent), and whether any value is UNCHANGED."""
        data, at = self.data, self.at
        (count,) = _INT16.unpack_from(data, at)
        at += 2
        if count != len(plan.columns):
            raise SourceSchemaError(
                f"pgoutput sent a row of {count} columns for a relation of {len(plan.columns)}"
            )
        values: dict[str, Any] = {}
        length, unchanged = _INT32.unpack_from, False
        for name, parse in plan.columns:
            kind = data[at]
            at += 1
            if kind == _TEXT:
                (size,) = length(data, at)
                at += 4
                if name is not None:
                    text = str(data[at : at + size], "utf-8")
                    values[name] = text if parse is None else parse(text)
                at += size
            elif kind == _NULL:
                if name is not None:
                    values[name] = None
            elif kind == _UNCHANGED_TOAST:
                if name is not None:
                    values[name] = UNCHANGED
                    unchanged = True
            else:
                raise _kind_error(kind)
        self.at = at
        return values, unchanged

    def skip_tuple(self) -> int:
        """Steps over TupleData without decoding it; returns where it started."""
        data, start = self.data, self.at
        (count,) = _INT16.unpack_from(data, start)
        at, length = start + 2, _INT32.unpack_from
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == _TEXT:
                at += 4 + length(data, at)[0]
            elif kind != _NULL and kind != _UNCHANGED_TOAST:
                raise _kind_error(kind)
        self.at = at
        return start


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
