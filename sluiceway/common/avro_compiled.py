"""One event at a time to Avro, by a function compiled once per schema; fastavro's bytes.

fastavro walks the schema for every event: per field a dispatch on the type's name, and for
every nullable column a trial validation of each branch of its union. That walk was a
third of streaming capture's CPU. ``compile_writer`` turns a record schema into straight
Python code that writes the common types itself (null, boolean, int, long, double, string,
bytes, enums, records, the date and time logical types, unions of null and one of these).
Any other field (decimal, uuid, float, arrays, other unions) is written by fastavro alone,
with its own schema: a record's encoding is the concatenation of its fields', so the bytes
are the same.

Each value written is first checked to be of the exact Python type fastavro would take
without converting or refusing it (an ``int`` for a long, a ``str`` for a string...). A
value that is not, a missing field or a number out of range raises, and the caller then
encodes the whole event with fastavro, which writes it as it always did or says what is
wrong. The compiled code never writes bytes fastavro would not.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.write import LOGICAL_WRITERS

Writer = Callable[[Any], bytes]
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
# Zig-zagged values below 2**14 as their whole varint (one or two bytes), and any 14 bits as
# two bytes that both say more follow: a long is written 14 bits per lookup.
_LAST = [bytes([z]) if z < 0x80 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(1 << 14)]
_MORE = [bytes([(z & 0x7F) | 0x80, (z >> 7) | 0x80]) for z in range(1 << 14)]
_LOGICAL_TYPES = {
    ("long", "timestamp-micros"): datetime, ("long", "local-timestamp-micros"): datetime,
    ("int", "date"): date, ("long", "time-micros"): time,
}  # fmt: skip


class Unsupported(Exception):
    """A type the compiled code leaves to fastavro."""


class LeftToFastavro(Exception):
    """The compiled code does not write this event; fastavro does."""


def long_bytes(value: int) -> bytes:
    """Avro's zig-zag varint of a long; OverflowError beyond 64 bits, as fastavro's."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise OverflowError(f"{value} does not fit an Avro long")
    z = (value << 1) ^ (value >> 63)
    return _LAST[z] if z < 0x4000 else _varint(z)


def _varint(z: int) -> bytes:
    """The varint of a zig-zagged value of more than 14 bits; unrolled up to 56 bits, where
    timestamps and positions are."""
    if z < 1 << 28:
        return _MORE[z & 0x3FFF] + _LAST[z >> 14]
    if z < 1 << 42:
        return _MORE[z & 0x3FFF] + _MORE[(z >> 14) & 0x3FFF] + _LAST[z >> 28]
    if z < 1 << 56:
        low = _MORE[z & 0x3FFF] + _MORE[(z >> 14) & 0x3FFF]
        return low + _MORE[(z >> 28) & 0x3FFF] + _LAST[z >> 42]
    parts = []
    while z >= 0x4000:
        parts.append(_MORE[z & 0x3FFF])
        z >>= 14
    parts.append(_LAST[z])
    return b"".join(parts)


def _fastavro_writer(schema: Any) -> Writer:
    parsed = parse_schema(schema)

    def write(value: Any) -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, parsed, value)
        return out.getvalue()

    return write


class _Emitter:
    """Python source writing one value of a schema, and the objects that source names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "_long": long_bytes, "_double": struct.Struct("<d").pack, "_varint": _varint,
            "_LAST": _LAST, "_MORE": _MORE,
        }  # fmt: skip
        self.count = 0

    def name(self, obj: Any) -> str:
        self.count += 1
        key = f"_k{self.count}"
        self.env[key] = obj
        return key

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def check(self, depth: int, condition: str) -> None:
        """Leave the event to fastavro unless ``condition`` holds."""
        self.line(depth, f"if not ({condition}): raise LeftToFastavro")

    def value(self, schema: Any, v: str, depth: int) -> None:
        if isinstance(schema, list):
            self.union(schema, v, depth)
        elif isinstance(schema, dict) and schema.get("type") == "record":
            self.record(schema, v, depth)
        elif isinstance(schema, dict) and schema.get("type") == "enum":
            index = {s: long_bytes(i) for i, s in enumerate(schema["symbols"])}
            self.check(depth, f"type({v}) is str and {v} in {self.name(index)}")
            self.line(depth, f"a({self.name(index)}[{v}])")
        elif isinstance(schema, dict) and "logicalType" in schema:
            self.logical(schema, v, depth)
        elif isinstance(schema, dict):
            self.value(schema["type"], v, depth)
        else:
            self.primitive(schema, v, depth)

    def primitive(self, schema: Any, v: str, depth: int) -> None:
        if schema == "null":
            self.check(depth, f"{v} is None")
        elif schema == "boolean":
            self.check(depth, f"{v} is True or {v} is False")
            self.line(depth, f'a(b"\\x01" if {v} else b"\\x00")')
        elif schema in ("int", "long"):
            low, high = (_INT_MIN, _INT_MAX) if schema == "int" else (_LONG_MIN, _LONG_MAX)
            self.check(depth, f"type({v}) is int and {low} <= {v} <= {high}")
            self.varint(f"({v} << 1) ^ ({v} >> 63)", depth)
        elif schema == "double":
            self.check(depth, f"type({v}) is float")
            self.line(depth, f"a(_double({v}))")
        elif schema in ("string", "bytes"):
            self.check(depth, f"type({v}) is {'str' if schema == 'string' else 'bytes'}")
            raw = f"{v}.encode()" if schema == "string" else v
            self.line(depth, f"b = {raw}")
            self.varint("len(b) << 1", depth)
            self.line(depth, "a(b)")
        else:
            raise Unsupported(schema)

    def varint(self, zigzagged: str, depth: int) -> None:
        """Append the varint of an expression; inline up to 28 bits, where most values are."""
        self.line(depth, f"z = {zigzagged}")
        self.line(depth, "if z < 0x4000: a(_LAST[z])")
        self.line(depth, "elif z < 0x10000000: a(_MORE[z & 0x3FFF]); a(_LAST[z >> 14])")
        self.line(depth, "else: a(_varint(z))")

    def logical(self, schema: dict[str, Any], v: str, depth: int) -> None:
        kind = (schema["type"], schema["logicalType"])
        if kind not in _LOGICAL_TYPES:
            raise Unsupported(kind)
        # fastavro converts a date or time object and takes its integer as it is
        self.line(depth, f"if type({v}) is not int:")
        self.check(depth + 1, f"type({v}) is {self.name(_LOGICAL_TYPES[kind])}")
        prepare = self.name(LOGICAL_WRITERS["-".join(kind)])
        self.line(depth + 1, f"{v} = {prepare}({v}, {self.name(schema)})")
        self.primitive(schema["type"], v, depth)

    def union(self, branches: list[Any], v: str, depth: int) -> None:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported(branches)
        null_at = branches.index("null")
        other = branches[1 - null_at]
        self.line(depth, f"if {v} is None: a({bytes([2 * null_at])!r})")
        self.line(depth, "else:")
        self.line(depth + 1, f"a({bytes([2 * (1 - null_at)])!r})")
        if isinstance(other, dict) and other.get("type") == "record":
            # only the branch named as Codec.encode names it: fastavro would otherwise
            # choose the branch by validating the record
            name = self.name(other["name"])
            self.check(depth + 1, f"type({v}) is tuple and len({v}) == 2 and {v}[0] == {name}")
            self.line(depth + 1, f"{v} = {v}[1]")
        self.value(other, v, depth + 1)

    def record(self, schema: dict[str, Any], v: str, depth: int) -> None:
        self.check(depth, f"type({v}) is dict")
        for field in schema["fields"]:
            inner, start = self.var(), len(self.lines)
            self.line(depth, f"{inner} = {v}[{field['name']!r}]")
            try:
                self.value(field["type"], inner, depth)
            except Unsupported:
                del self.lines[start + 1 :]
                self.line(depth, f"a({self.name(_fastavro_writer(field['type']))}({inner}))")


def compile_writer(schema: dict[str, Any]) -> Writer | None:
    """A function writing an event of the record ``schema`` (without fastavro's parsing
    keys) as fastavro's ``schemaless_writer`` would; it raises where fastavro is to write
    the event. None when the schema cannot be compiled (named types referred to by name)."""
    emit = _Emitter()
    emit.env["LeftToFastavro"] = LeftToFastavro
    emit.line(1, "parts = []; a = parts.append")
    try:
        emit.record(schema, "event", 1)
    except Exception:  # e.g. a named type used again by name: fastavro's job
        return None
    emit.line(1, 'return b"".join(parts)')
    source = "def write(event):\n" + "\n".join(emit.lines) + "\n"
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), emit.env)
    writer: Writer = emit.env["write"]
    return writer
