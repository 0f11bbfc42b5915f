"""PostgreSQL column types -> Avro, Arrow and back: the one type mapping (docs/types.md).

A catalog column's type is the string ``format_type()`` prints (``numeric(12,2)``,
``character varying(40)``, ``text[]``, ``timestamp with time zone``) or the name of one of
the catalog's user types (an enum, or a domain over a mapped type). ``pg_type`` resolves it
to a ``PgType`` that knows the Avro type, the Arrow type, how to parse PostgreSQL's text
output of a value into what fastavro and pyarrow take, and how restore writes the value back
(a psycopg2 parameter, cast to the column's type).

Text forms are read as a session with the defaults prints them: ``DateStyle`` ISO,
``IntervalStyle`` postgres, ``bytea_output`` hex (escape is read too) and any ``TimeZone``
(offsets are kept in the text, so timestamptz values are exact whatever the zone).
A value the mapping cannot carry exactly (a NaN in a ``numeric(p,s)``, ``infinity``
timestamps, dates BC or after 9999, multi-dimensional arrays) raises ``UncarriedValueError``
naming it, rather than landing changed.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg2
import psycopg2.extensions
import pyarrow as pa
from psycopg2.sql import SQL, Composable

from sluiceway.common.catalog import Catalog, CatalogError, Column, UserType
from sluiceway.common.errors import TerminalError

# Arrow's widest decimal; a wider numeric(p,s) has no Parquet decimal to land in.
MAX_DECIMAL_PRECISION = 76
_DECIMAL128_PRECISION = 38
# A user type's name as format_type prints it: optionally schema-qualified, quoted when needed.
_PART = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
_TYPE_NAME = re.compile(rf"{_PART}(?:\.{_PART})?")


class UnmappableTypeError(CatalogError):
    """A column type outside the mapping: exclude the column or cast it in a view."""


class UncarriedValueError(TerminalError, ValueError):
    """A value of a mapped type that the mapping cannot carry exactly."""


@dataclass(frozen=True)
class PgType:
    """How one PostgreSQL type travels: Avro, Arrow, text parser and restore adaptation."""

    sql: str
    """The type as SQL, from the catalog; restore casts its parameter to it."""
    avro: Any
    """The Avro type of a value (never a union: ``avro_field_type`` adds the null)."""
    arrow: pa.DataType
    parse: Callable[[str], Any]
    """PostgreSQL's text output of a non-NULL value -> the value fastavro writes."""
    adapt: Callable[[Any], Any] = lambda value: value
    """A value as fastavro reads it back -> the psycopg2 parameter restore sends."""

    def avro_field_type(self, nullable: bool) -> Any:
        return ["null", self.avro] if nullable else self.avro

    def parse_text(self, text: str | None) -> Any:
        """A cell's text form (None for NULL) -> its Avro value."""
        return None if text is None else self.parse(text)

    def restore_param(self, value: Any) -> Any:
        """A cell's Avro value -> what psycopg2 sends for ``restore_placeholder``."""
        return None if value is None else self.adapt(value)

    def restore_placeholder(self) -> Composable:
        """``CAST(%s AS <type>)``: the parameter, cast to the column's type (the type text is
        checked by ``pg_type``). Not ``%s::<type>``: the cast would bind before the minus
        sign psycopg2 writes for a negative number, and -32768::smallint overflows."""
        return SQL(f"CAST(%s AS {self.sql})")


def _refuse(kind: str, text: str, expected: str) -> UncarriedValueError:
    return UncarriedValueError(f"{kind} value {text!r} cannot be carried exactly; {expected}")


def _bool(text: str) -> bool:
    # boolout prints t/f; a ::text cast prints true/false
    if text in ("t", "true"):
        return True
    if text in ("f", "false"):
        return False
    raise _refuse("boolean", text, "expected t, f, true or false")


def _float(text: str) -> float:
    try:
        return float(text)  # takes NaN, Infinity and -Infinity as PostgreSQL prints them
    except ValueError:
        raise _refuse("floating-point", text, "expected a number, NaN or ±Infinity") from None


def _real(text: str) -> float:
    # rounded to 32 bits as Avro's float stores it, so parsed and read-back values agree
    value: float = struct.unpack("<f", struct.pack("<f", _float(text)))[0]
    return value


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _refuse("numeric", text, "expected a decimal number") from None
    if not value.is_finite():
        raise _refuse(
            "numeric", text, "an Avro decimal holds no NaN or Infinity; declare the column "
            "as unconstrained numeric (carried as text) to keep them"
        )  # fmt: skip
    return value


def _numeric_text(text: str) -> str:
    try:
        Decimal(text)
    except InvalidOperation:
        raise _refuse("numeric", text, "expected a number, NaN or ±Infinity") from None
    return text  # the text itself: exact digits, NaN and ±Infinity as printed


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise _refuse("uuid", text, "expected a UUID") from None


def _bytea(text: str) -> bytes:
    # psycopg2's own typecaster reads both the hex and the escape output formats
    return bytes(psycopg2.BINARY(text, None))


_DATE_TEXT = re.compile(r"\d{4}-\d\d-\d\d")
_RANGE = "only 0001-01-01 to 9999-12-31 fits (no infinity, no BC, ISO DateStyle)"


def _date(text: str) -> date:
    if not _DATE_TEXT.fullmatch(text):
        raise _refuse("date", text, _RANGE)
    return date.fromisoformat(text)


def _time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise _refuse("time", text, "expected 00:00:00 to 23:59:59.999999") from None


def _datetime(text: str, kind: str) -> datetime:
    if not _DATE_TEXT.match(text) or text.endswith(" BC"):
        raise _refuse(kind, text, _RANGE)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _refuse(kind, text, _RANGE) from None


def _timestamp(text: str) -> datetime:
    value = _datetime(text, "timestamp")
    if value.tzinfo is not None:
        raise _refuse("timestamp", text, "expected no time zone offset")
    return value


def _timestamptz(text: str) -> datetime:
    # the common case first, as capture meets it on every row: fromisoformat itself refuses
    # infinity, BC and years past 9999; anything it does not take gets the checks below
    try:
        fast = datetime.fromisoformat(text) if text[4:5] == "-" else None
    except ValueError:
        fast = None
    if fast is not None and fast.tzinfo is not None:
        return fast.astimezone(UTC)
    value = _datetime(text, "timestamptz")
    if value.tzinfo is None:
        raise _refuse("timestamptz", text, "expected a time zone offset")
    return value.astimezone(UTC)


def _text(text: str) -> str:
    return text


def _array_parser(element: PgType) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        if text.startswith("["):
            raise _refuse("array", text, "arrays with explicit bounds are not carried")
        # psycopg2's own array typecaster: quoting, escaping, NULL elements, empty {}
        items = psycopg2.extensions.STRINGARRAY(text, None)
        if any(isinstance(item, list) for item in items):
            raise _refuse("array", text, "only one-dimensional arrays are carried")
        return [None if item is None else element.parse(item) for item in items]

    return parse


def _array_adapter(element: PgType) -> Callable[[Any], list[Any]]:
    def adapt(values: Any) -> list[Any]:
        return [element.restore_param(value) for value in values]

    return adapt


def _simple(sql_: str, avro: Any, arrow: pa.DataType, parse: Callable[[str], Any]) -> PgType:
    return PgType(sql_, avro, arrow, parse)


def _logical(base: str, logical: str) -> dict[str, str]:
    return {"type": base, "logicalType": logical}


_STRING = ("string", pa.string(), _text)
_FIXED: dict[str, tuple[Any, pa.DataType, Callable[[str], Any]]] = {
    "smallint": ("int", pa.int16(), int),
    "integer": ("int", pa.int32(), int),
    "bigint": ("long", pa.int64(), int),
    "real": ("float", pa.float32(), _real),
    "double precision": ("double", pa.float64(), _float),
    "boolean": ("boolean", pa.bool_(), _bool),
    "numeric": ("string", pa.string(), _numeric_text),
    "text": _STRING,
    "character varying": _STRING,
    "bpchar": _STRING,
    "json": _STRING,
    "jsonb": _STRING,
    "uuid": (_logical("string", "uuid"), pa.string(), _uuid),
    "bytea": ("bytes", pa.binary(), _bytea),
    "date": (_logical("int", "date"), pa.date32(), _date),
    "time": (_logical("long", "time-micros"), pa.time64("us"), _time),
    "timestamp": (_logical("long", "local-timestamp-micros"), pa.timestamp("us"), _timestamp),
    "timestamptz": (
        _logical("long", "timestamp-micros"),
        pa.timestamp("us", tz="UTC"),
        _timestamptz,
    ),
    "interval": _STRING,
}
# Other spellings of the same types (format_type prints the first column of _FIXED; a
# hand-written catalog may use the short names)
_ALIASES = {
    "int2": "smallint", "int": "integer", "int4": "integer", "int8": "bigint",
    "float4": "real", "float8": "double precision", "bool": "boolean", "decimal": "numeric",
    "varchar": "character varying", "character": "bpchar", "char": "bpchar",
    "time without time zone": "time", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}  # fmt: skip
# Modifiers that change nothing in the mapping: lengths, fractional-second precision,
# interval fields. What is left after removing them is looked up in _FIXED/_ALIASES.
_MODIFIERS = (
    (re.compile(r"^(character varying|varchar|character|char|bpchar)\(\d+\)$"), r"\1"),
    (re.compile(r"^(time|timestamp)\([0-6]\)( with(?:out)? time zone)?$"), r"\1\2"),
    (re.compile(r"^(timestamptz|timetz)\([0-6]\)$"), r"\1"),
    (re.compile(r"^interval( (?:year|month|day|hour|minute|second)(?: to \w+)?)?(\(\d\))?$"),
     "interval"),
)  # fmt: skip
_NUMERIC = re.compile(r"^(?:numeric|decimal)\((\d+)(?:,\s*(-?\d+))?\)$")


def _builtin(name: str) -> PgType | str:
    """The PgType of a built-in type, or why it has none."""
    bare = " ".join(name.lower().split())  # a hand-written catalog may say VARCHAR(40)
    numeric = _NUMERIC.match(bare)
    if numeric:
        return _decimal_type(name, int(numeric.group(1)), int(numeric.group(2) or 0))
    for pattern, repl in _MODIFIERS:
        bare = pattern.sub(repl, bare)
    bare = _ALIASES.get(bare, bare)
    if bare not in _FIXED:
        return f"type {name!r} has no mapping (docs/types.md lists the mapped types)"
    pg = _simple(name, *_FIXED[bare])
    if pg.parse is _bytea:
        return replace(pg, adapt=bytes)
    if pg.parse is _uuid:
        return replace(pg, adapt=str)  # fastavro reads a uuid back as uuid.UUID
    if pg.parse in (_float, _real):
        return replace(pg, adapt=_float_param)
    return pg


def _float_param(value: float) -> str:
    """A float as text for the cast: psycopg2 writes -0.0 as the SQL expression ``-0.0``,
    which is numeric zero (numeric has no negative zero) before the cast reaches it."""
    return repr(float(value))


def _decimal_type(name: str, precision: int, scale: int) -> PgType | str:
    if not 0 <= scale <= precision:
        return f"type {name!r}: an Avro decimal needs 0 <= scale <= precision"
    if precision > MAX_DECIMAL_PRECISION:
        return (
            f"type {name!r}: Parquet decimals hold at most {MAX_DECIMAL_PRECISION} digits; "
            "use unconstrained numeric (carried as text) or exclude the column"
        )
    avro = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    wide = precision > _DECIMAL128_PRECISION
    arrow = pa.decimal256(precision, scale) if wide else pa.decimal128(precision, scale)
    return PgType(name, avro, arrow, _decimal)


def _resolve(name: str, user_types: Mapping[str, UserType], seen: tuple[str, ...]) -> PgType | str:
    name = name.strip()
    if name.endswith("[]"):
        element = _resolve(name[:-2], user_types, seen)
        if isinstance(element, str):
            return element
        if isinstance(element.avro, dict) and element.avro.get("type") == "array":
            return f"type {name!r}: arrays of arrays have no mapping"
        avro = {"type": "array", "items": ["null", element.avro]}
        return PgType(
            name, avro, pa.list_(element.arrow), _array_parser(element), _array_adapter(element)
        )
    user = user_types.get(name)
    if user is None:
        return _builtin(name)
    if not _TYPE_NAME.fullmatch(name):
        return f"user type {name!r} is not a type name as format_type prints it"
    if user.kind == "enum":
        # a string, not an Avro enum: labels may hold any character and may be added later
        return PgType(name, "string", pa.string(), _text)
    if name in seen:
        return f"domain {name!r} is defined over itself"
    base = _resolve(str(user.base), user_types, (*seen, name))
    return base if isinstance(base, str) else replace(base, sql=name)


def unmappable_reason(type_name: str, user_types: Mapping[str, UserType]) -> str | None:
    """Why a column type is outside the mapping, or None when it is mapped."""
    found = _resolve(type_name, user_types, ())
    return found if isinstance(found, str) else None


def pg_type(type_name: str, user_types: Mapping[str, UserType]) -> PgType:
    """The mapping of one column type; ``UnmappableTypeError`` says why there is none."""
    found = _resolve(type_name, user_types, ())
    if isinstance(found, str):
        raise UnmappableTypeError(found)
    return found


def column_type(column: Column, user_types: Mapping[str, UserType]) -> PgType:
    """The mapping of a catalog column's type."""
    return pg_type(column.type, user_types)


def avro_field(column: Column, user_types: Mapping[str, UserType]) -> dict[str, Any]:
    """The Avro field of a catalog column: a union with null (default null) when nullable."""
    field: dict[str, Any] = {
        "name": column.name,
        "type": column_type(column, user_types).avro_field_type(column.nullable),
    }
    if column.nullable:
        field["default"] = None
    if column.doc:
        field["doc"] = column.doc
    return field


def arrow_field(column: Column, user_types: Mapping[str, UserType]) -> pa.Field:
    """The Arrow (Parquet) field of a catalog column."""
    return pa.field(column.name, column_type(column, user_types).arrow, column.nullable)


def check_catalog_types(catalog: Catalog) -> list[str]:
    """One line per captured column whose type is outside the mapping, naming
    ``schema.table.column`` and its type."""
    problems = []
    for entity in catalog.entities.values():
        for column in entity.columns:
            reason = unmappable_reason(column.type, catalog.types)
            if reason is not None:
                problems.append(
                    f"{entity.table}.{column.name} ({column.type}): {reason}; exclude the "
                    "column or cast it to a mapped type in a view"
                )
    return problems
