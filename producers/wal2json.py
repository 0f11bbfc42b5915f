"""Decoding wal2json (format-version 2) messages into committed transactions.

wal2json sends one JSON message per change between a ``B`` (begin) and a ``C`` (commit)
message; logical messages (``M``) carry our heartbeats. Values arrive as JSON scalars or
PostgreSQL's text output, and are converted to the types the Avro schemas declare.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NoReturn

from sluiceway.common.codec import Codec
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.events import lsn_to_int
from sluiceway.producers.source import TABLES

HEARTBEAT_PREFIX = "sluiceway-heartbeat"
Converter = Callable[[Any], Any]
_CONVERTERS: dict[str, Converter] = {
    "long": int,
    "int": int,
    "string": str,
    "boolean": bool,
    "double": float,
    "timestamp-micros": datetime.fromisoformat,
    "date": date.fromisoformat,
}
# A value of this Python type is already what its converter would return (json gives ints,
# floats, bools and strs), so the converter can be skipped: same result, less time.
_PYTYPES: dict[str, type] = {
    "long": int,
    "int": int,
    "string": str,
    "boolean": bool,
    "double": float,
    "timestamp-micros": datetime,
    "date": date,
}
_OPS = {"I": "c", "U": "u", "D": "d"}


@dataclass(frozen=True)
class Change:
    entity: str
    tenant_id: str
    entity_id: int
    op: str
    row: dict[str, Any] | None


@dataclass
class Transaction:
    xid: int
    commit_lsn: int
    commit_ts: datetime
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Heartbeat:
    lsn: int


def _type_name(avro_type: Any) -> str:
    """The Avro type (or logical type) of a field, a nullable union's other branch."""
    if isinstance(avro_type, list):
        return _type_name(next(t for t in avro_type if t != "null"))
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType", avro_type["type"]))
    return str(avro_type)


def _converter(avro_type: Any) -> Converter:
    convert = _CONVERTERS[_type_name(avro_type)]
    if isinstance(avro_type, list):
        return lambda v: None if v is None else convert(v)
    return convert


def column_converters(codec: Codec) -> dict[str, dict[str, Converter]]:
    """Per table, per column: how to turn a wal2json value into the Avro field's type."""
    return {
        TABLES[entity]: {f["name"]: _converter(f["type"]) for f in schema.record["fields"]}
        for entity, schema in codec.schemas.items()
    }


def _fast_converters(codec: Codec) -> dict[str, dict[str, tuple[type, Converter]]]:
    """Per table, per column (tenant_id too): the Python type a value already has when it
    needs no conversion, and the converter otherwise (the same ones as column_converters)."""
    return {
        TABLES[entity]: {
            "tenant_id": (str, str),
            **{
                f["name"]: (_PYTYPES[t], _CONVERTERS[t])
                for f in schema.record["fields"]
                for t in (_type_name(f["type"]),)
            },
        }
        for entity, schema in codec.schemas.items()
    }


class Decoder:
    """Feeds on wal2json messages; returns a Transaction at each commit."""

    def __init__(self, codec: Codec) -> None:
        self.converters = column_converters(codec)
        self._fast = _fast_converters(codec)
        self.entities = {table: entity for entity, table in TABLES.items()}
        self.current: Transaction | None = None

    def feed(self, payload: str) -> Transaction | Heartbeat | None:
        msg: dict[str, Any] = json.loads(payload)
        action = msg["action"]
        if action == "B":
            self.current = Transaction(
                msg["xid"], lsn_to_int(msg["lsn"]), datetime.fromisoformat(msg["timestamp"])
            )
        elif action in _OPS:
            self._require_txn(action).changes.append(self._change(msg))
        elif action == "C":
            done, self.current = self._require_txn(action), None
            return done
        elif action == "M" and msg.get("prefix") == HEARTBEAT_PREFIX:
            return Heartbeat(lsn_to_int(msg["lsn"]))
        elif action == "T":
            raise SourceSchemaError(
                f"TRUNCATE of {msg.get('schema')}.{msg.get('table')} cannot be captured as "
                "row changes; re-create the slot to take a new snapshot"
            )
        return None

    def _require_txn(self, action: str) -> Transaction:
        if self.current is None:
            raise SourceSchemaError(f"wal2json sent {action!r} outside a transaction")
        return self.current

    def _change(self, msg: dict[str, Any]) -> Change:
        table = msg["table"]
        entity = self.entities.get(table)
        if entity is None:
            raise SourceSchemaError(f"change to uncaptured table {msg['schema']}.{table}")
        op = _OPS[msg["action"]]
        if op == "d":
            tenant, key = self._key(table, msg["identity"])
            return Change(entity, tenant, key, op, None)
        values = self._convert(table, msg["columns"])
        if len(values) < len(self._fast[table]):
            # An unchanged TOASTed column is left out of "columns"; with REPLICA IDENTITY
            # FULL the old row in "identity" still has it. Only those columns are converted.
            old = [c for c in msg.get("identity", ()) if c["name"] not in values]
            values.update(self._convert(table, old))
        missing = self.converters[table].keys() - values.keys()
        if missing:
            raise SourceSchemaError(
                f"update of {table} lacks columns {sorted(missing)}; "
                f"run: ALTER TABLE {table} REPLICA IDENTITY FULL"
            )
        tenant = values.pop("tenant_id")
        return Change(entity, tenant, values["id"], op, values)

    def _key(self, table: str, identity: list[dict[str, Any]]) -> tuple[Any, Any]:
        """(tenant_id, id) of a deleted row; its other columns are only checked by name."""
        fast = self._fast[table]
        for column in identity:
            if column["name"] not in fast:
                self._unknown(table, column)
        values = self._convert(table, [c for c in identity if c["name"] in ("tenant_id", "id")])
        return values["tenant_id"], values["id"]

    def _convert(self, table: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
        fast = self._fast[table]
        out: dict[str, Any] = {}
        for column in columns:
            name, value = column["name"], column["value"]
            known = fast.get(name)
            if known is None:
                self._unknown(table, column)
            elif value is None or type(value) is known[0]:
                out[name] = value
            else:
                out[name] = known[1](value)
        return out

    @staticmethod
    def _unknown(table: str, column: dict[str, Any]) -> NoReturn:
        raise SourceSchemaError(
            f"column {table}.{column['name']} ({column.get('type')}) is not in the Avro schema; "
            "add it to schemas/ or drop it from the source"
        )
