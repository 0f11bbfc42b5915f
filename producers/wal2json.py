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
from typing import Any

from producers.errors import SourceSchemaError
from producers.events import lsn_to_int
from producers.source import TABLES
from sluiceway.codec import Codec

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


def _converter(avro_type: Any) -> Converter:
    if isinstance(avro_type, list):
        inner = _converter(next(t for t in avro_type if t != "null"))
        return lambda v: None if v is None else inner(v)
    if isinstance(avro_type, dict):
        return _CONVERTERS[str(avro_type.get("logicalType", avro_type["type"]))]
    return _CONVERTERS[avro_type]


def column_converters(codec: Codec) -> dict[str, dict[str, Converter]]:
    """Per table, per column: how to turn a wal2json value into the Avro field's type."""
    return {
        TABLES[entity]: {f["name"]: _converter(f["type"]) for f in schema.record["fields"]}
        for entity, schema in codec.schemas.items()
    }


class Decoder:
    """Feeds on wal2json messages; returns a Transaction at each commit."""

    def __init__(self, codec: Codec) -> None:
        self.converters = column_converters(codec)
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
            values = self._convert(table, msg["identity"])
            return Change(entity, values.pop("tenant_id"), values["id"], op, None)
        # An unchanged TOASTed column is left out of "columns"; with REPLICA IDENTITY FULL
        # the old row in "identity" still has it.
        values = self._convert(table, msg.get("identity", []))
        values.update(self._convert(table, msg["columns"]))
        missing = self.converters[table].keys() - values.keys()
        if missing:
            raise SourceSchemaError(
                f"update of {table} lacks columns {sorted(missing)}; "
                f"run: ALTER TABLE {table} REPLICA IDENTITY FULL"
            )
        tenant = values.pop("tenant_id")
        return Change(entity, tenant, values["id"], op, values)

    def _convert(self, table: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
        converters = self.converters[table]
        out: dict[str, Any] = {}
        for column in columns:
            name, value = column["name"], column["value"]
            if name == "tenant_id":
                out[name] = value
                continue
            convert = converters.get(name)
            if convert is None:
                raise SourceSchemaError(
                    f"column {table}.{name} ({column.get('type')}) is not in the Avro schema; "
                    "add it to schemas/ or drop it from the source"
                )
            out[name] = None if value is None else convert(value)
        return out
