"""Random values of every mapped PostgreSQL type, and their text forms (pure, seeded).

``kind_of`` reads a catalog column type (through the catalog's enums and domains) into a
``Kind``; ``value`` draws an ordinary value or, when asked, an edge value the type can hold
(NaN and ±Infinity, empty arrays and arrays with NULL elements, JSON with unicode, dates
before 1970, text with quotes, commas, line breaks and backslashes); ``text_form`` writes a
value as PostgreSQL reads it, which is also what ``pgtypes`` parses back to the same value.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sluiceway.common.catalog import UserType
from sluiceway.common.pgtypes import pg_type

WORDS = ("reset", "password", "invoice", "refund", "login", "export", "slow", "billing", "sso")
ODD_TEXT = (
    "",
    'She said "it works", then it didn\'t.',
    "commas, commas, and more commas",
    "Ünïcödé: café, 日本語, Ελληνικά, emoji 🚀",
    "C:\\temp\\new and a tab\there",
    "line one\nline two\r\nline three",
    "NULL",
    "\\N",
    '{"a,b"}',
)
ODD_JSON: tuple[Any, ...] = (
    {},
    [],
    None,
    "bare string",
    {"ünï": "日本語 🚀", "quote": 'say "hi"', "slash": "a\\b", "nested": {"list": [1, None]}},
    {"big": 12345678901234567890, "neg": -1.5e-7, "line": "a\nb"},
)
_CHARS = re.compile(r"^(character varying|varchar|character|char|bpchar)(?:\((\d+)\))?$")


@dataclass(frozen=True)
class Kind:
    """What a column holds, as far as generating values goes."""

    name: str
    """int, real, double, boolean, decimal, numeric, text, varchar, char, uuid, json,
    jsonb, bytea, date, time, timestamp, timestamptz, interval, enum or array."""
    size: int = 0
    """Bits of an int, length of a varchar/char (0: unbounded), precision of a decimal."""
    scale: int = 0
    labels: tuple[str, ...] = ()
    element: Kind | None = None


def kind_of(type_name: str, types: Mapping[str, UserType]) -> Kind:
    """The kind of a catalog column type; ``UnmappableTypeError`` for a type outside the
    mapping."""
    pg_type(type_name, types)
    return _kind(type_name.strip(), types)


def _kind(name: str, types: Mapping[str, UserType]) -> Kind:
    if name.endswith("[]"):
        return Kind("array", element=_kind(name[:-2].strip(), types))
    user = types.get(name)
    if user is not None:
        if user.kind == "enum":
            return Kind("enum", labels=user.values)
        return _kind(str(user.base).strip(), types)
    bare = " ".join(name.lower().split())
    chars = _CHARS.match(bare)
    if chars:
        varying = chars.group(1) in ("character varying", "varchar")
        size = int(chars.group(2)) if chars.group(2) else (0 if varying else 1)
        return Kind("varchar" if varying else "char", size=size)
    pg = pg_type(name, types)
    return _arrow_kind(pg.arrow, pg.avro, bare)


def _arrow_kind(arrow: pa.DataType, avro: Any, bare: str) -> Kind:
    if pa.types.is_integer(arrow):
        return Kind("int", size=arrow.bit_width)
    if pa.types.is_decimal(arrow):
        return Kind("decimal", size=arrow.precision, scale=arrow.scale)
    if pa.types.is_timestamp(arrow):
        return Kind("timestamp" if arrow.tz is None else "timestamptz")
    simple = {pa.float32(): "real", pa.float64(): "double", pa.bool_(): "boolean",
              pa.binary(): "bytea", pa.date32(): "date", pa.time64("us"): "time"}  # fmt: skip
    if arrow in simple:
        return Kind(simple[arrow])
    if isinstance(avro, dict) and avro.get("logicalType") == "uuid":
        return Kind("uuid")
    for name in ("jsonb", "json", "interval"):
        if bare.startswith(name):
            return Kind(name)
    if bare.startswith(("numeric", "decimal")):
        return Kind("numeric")
    return Kind("text")


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(2, 6))).capitalize()


def _int(kind: Kind, rng: random.Random, edge: bool) -> int:
    low, high = -(2 ** (kind.size - 1)), 2 ** (kind.size - 1) - 1
    return rng.choice((low, high, 0, -1)) if edge else rng.randint(0, 30_000)


def _real(_kind: Kind, rng: random.Random, edge: bool) -> float:
    # quarters are exact in 32 bits, so the value read back is the value drawn
    if edge:
        return rng.choice((math.nan, math.inf, -math.inf, -0.0))
    return rng.randint(-40_000, 40_000) / 4


def _double(_kind: Kind, rng: random.Random, edge: bool) -> float:
    if edge:
        return rng.choice((math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308))
    return rng.uniform(-1e6, 1e6)


def _decimal(kind: Kind, rng: random.Random, edge: bool) -> Decimal:
    top = 10**kind.size - 1
    digits = rng.choice((top, -top, 0)) if edge else rng.randint(-top, top)
    # from text: exact, where scaleb would round to the context's 28 digits
    return Decimal(f"{digits}E-{kind.scale}")


def _numeric(_kind: Kind, rng: random.Random, edge: bool) -> str:
    if edge:
        return rng.choice(("NaN", "Infinity", "-Infinity", "0", "-" + "9" * 40 + ".000000001"))
    return format(Decimal(rng.randint(-(10**12), 10**12)).scaleb(-rng.randint(0, 6)), "f")


def _text(kind: Kind, rng: random.Random, edge: bool) -> str:
    text = rng.choice(ODD_TEXT) if edge else _sentence(rng)
    if kind.name == "char":
        return text.replace("\n", " ")[: kind.size].ljust(kind.size)
    return text[: kind.size] if kind.size else text


def _uuid(_kind: Kind, rng: random.Random, edge: bool) -> str:
    if edge:
        return rng.choice((str(uuid.UUID(int=0)), str(uuid.UUID(int=2**128 - 1))))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _json(_kind: Kind, rng: random.Random, edge: bool) -> str:
    doc = rng.choice(ODD_JSON) if edge else {"n": rng.randint(0, 99), "w": _sentence(rng)}
    return json.dumps(doc, ensure_ascii=False)


def _bytea(_kind: Kind, rng: random.Random, edge: bool) -> bytes:
    if edge:
        return rng.choice((b"", b"\x00", bytes(range(256)), b"\\x"))
    return rng.randbytes(rng.randint(1, 24))


_EPOCH = datetime(2024, 1, 1)
_OLD = (datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime(1901, 1, 1), datetime(1, 1, 1))


def _moment(rng: random.Random, edge: bool) -> datetime:
    if edge:
        return rng.choice((*_OLD, datetime(9999, 12, 31, 23, 59, 59, 999_999)))
    return _EPOCH + timedelta(
        seconds=rng.randint(0, 400 * 86400), microseconds=rng.randint(0, 10**6 - 1)
    )


def _date(_kind: Kind, rng: random.Random, edge: bool) -> date:
    return _moment(rng, edge).date()


def _time(_kind: Kind, rng: random.Random, edge: bool) -> time:
    # never within the last second: a time(p) column rounds 23:59:59.9999 up to 24:00:00,
    # which no mapping carries
    if edge:
        return rng.choice((time(0), time(23, 59, 58, 999_999)))
    moment = _moment(rng, False).time()
    return moment.replace(second=58) if moment >= time(23, 59, 59) else moment


def _timestamp(_kind: Kind, rng: random.Random, edge: bool) -> datetime:
    return _moment(rng, edge)


def _timestamptz(_kind: Kind, rng: random.Random, edge: bool) -> datetime:
    # year 1 is left out: in a zone with a local mean time offset it prints before year 1
    moment = rng.choice(_OLD[:2]) if edge else _moment(rng, False)
    return moment.replace(tzinfo=UTC)


def _interval(_kind: Kind, rng: random.Random, edge: bool) -> str:
    if edge:
        return rng.choice(("00:00:00", "-1 days", "-00:00:01", "1 year 2 mons 3 days 04:05:06.789"))
    return f"{rng.randint(2, 40)} days {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"


def _enum(kind: Kind, rng: random.Random, edge: bool) -> str:
    # the last labels of the example hold a quote and a comma
    return kind.labels[-1] if edge else rng.choice(kind.labels)


def _array(kind: Kind, rng: random.Random, edge: bool) -> list[Any]:
    assert kind.element is not None
    if edge:
        shape = rng.choice(("empty", "null", "mixed"))
        if shape == "empty":
            return []
        if shape == "null":
            return [None]
        return [value(kind.element, rng, True), None, value(kind.element, rng, False)]
    return [value(kind.element, rng, False) for _ in range(rng.randint(1, 4))]


_DRAW: dict[str, Callable[[Kind, random.Random, bool], Any]] = {
    "int": _int, "real": _real, "double": _double,
    "boolean": lambda _k, rng, _e: rng.random() < 0.5,
    "decimal": _decimal, "numeric": _numeric, "text": _text, "varchar": _text, "char": _text,
    "uuid": _uuid, "json": _json, "jsonb": _json, "bytea": _bytea, "date": _date,
    "time": _time, "timestamp": _timestamp, "timestamptz": _timestamptz,
    "interval": _interval, "enum": _enum, "array": _array,
}  # fmt: skip


def value(kind: Kind, rng: random.Random, edge: bool = False) -> Any:
    """A value of ``kind``: an ordinary one, or an edge value the type can hold."""
    return _DRAW[kind.name](kind, rng, edge)


def _float_text(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def _element_text(kind: Kind, item: Any) -> str:
    if item is None:
        return "NULL"
    escaped = text_form(kind, item).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def text_form(kind: Kind, item: Any) -> str:
    """A non-NULL value as PostgreSQL's input (and, for these values, its output) text."""
    if kind.name == "array":
        assert kind.element is not None
        element = kind.element
        return "{" + ",".join(_element_text(element, i) for i in item) + "}"
    if kind.name in ("real", "double"):
        return _float_text(item)
    if kind.name == "boolean":
        return "t" if item else "f"
    if kind.name == "decimal":
        return format(item, "f")
    if kind.name == "bytea":
        return "\\x" + bytes(item).hex()
    if isinstance(item, datetime):
        return item.isoformat(sep=" ")
    if isinstance(item, date | time):
        return item.isoformat()
    return str(item)
