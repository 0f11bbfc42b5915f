"""Turning a captured column value into the Python value its Avro field expects.

Both decoders use these conversions: wal2json hands JSON scalars (numbers and booleans
already typed, everything else as PostgreSQL's text output), pgoutput hands PostgreSQL's
text output for every column. One converter per Avro type accepts both, so the two
plugins put the same values on the change topics.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sluiceway.common.codec import Codec
from sluiceway.producers.source import TABLES

Converter = Callable[[Any], Any]
_BOOLEANS = {"t": True, "f": False, "true": True, "false": False}


def parse_bool(value: Any) -> bool:
    """PostgreSQL's text output of a boolean is ``t``/``f``; JSON gives a bool already."""
    if isinstance(value, bool):
        return value
    try:
        return _BOOLEANS[value]
    except (KeyError, TypeError):
        raise ValueError(f"not a boolean: {value!r}; expected t or f") from None


CONVERTERS: dict[str, Converter] = {
    "long": int,
    "int": int,
    "string": str,
    "boolean": parse_bool,
    "double": float,  # float() reads PostgreSQL's NaN, Infinity and -Infinity too
    "timestamp-micros": datetime.fromisoformat,
    "date": date.fromisoformat,
}
# A value of this Python type is already what its converter would return (json gives ints,
# floats, bools and strs), so the converter can be skipped: same result, less time.
PYTYPES: dict[str, type] = {
    "long": int,
    "int": int,
    "string": str,
    "boolean": bool,
    "double": float,
    "timestamp-micros": datetime,
    "date": date,
}


def type_name(avro_type: Any) -> str:
    """The Avro type (or logical type) of a field, a nullable union's other branch."""
    if isinstance(avro_type, list):
        return type_name(next(t for t in avro_type if t != "null"))
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType", avro_type["type"]))
    return str(avro_type)


def _converter(avro_type: Any) -> Converter:
    convert = CONVERTERS[type_name(avro_type)]
    if isinstance(avro_type, list):
        return lambda v: None if v is None else convert(v)
    return convert


def column_converters(codec: Codec) -> dict[str, dict[str, Converter]]:
    """Per table, per column: how to turn a captured value into the Avro field's type."""
    return {
        TABLES[entity]: {f["name"]: _converter(f["type"]) for f in schema.record["fields"]}
        for entity, schema in codec.schemas.items()
    }


def fast_converters(codec: Codec) -> dict[str, dict[str, tuple[type, Converter]]]:
    """Per table, per column (tenant_id too): the Python type a value already has when it
    needs no conversion, and the converter otherwise (the same ones as column_converters)."""
    return {
        TABLES[entity]: {
            "tenant_id": (str, str),
            **{
                f["name"]: (PYTYPES[t], CONVERTERS[t])
                for f in schema.record["fields"]
                for t in (type_name(f["type"]),)
            },
        }
        for entity, schema in codec.schemas.items()
    }
