"""Decoding wal2json (format-version 2) messages into committed transactions.

wal2json sends one JSON message per change between a ``B`` (begin) and a ``C`` (commit)
message; logical messages (``M``) carry our heartbeats. Values arrive as JSON scalars or
PostgreSQL's text output, and are converted to the types the Avro schemas declare
(``producers/values.py``, shared with the pgoutput decoder).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

from sluiceway.common.codec import Codec
from sluiceway.producers.decoded import HEARTBEAT_PREFIX, Change, Heartbeat, Transaction
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.events import lsn_to_int
from sluiceway.producers.source import TABLES
from sluiceway.producers.values import column_converters, fast_converters

__all__ = ["Change", "Decoder", "Heartbeat", "Transaction"]

_OPS = {"I": "c", "U": "u", "D": "d"}


class Decoder:
    """Feeds on wal2json messages; returns a Transaction at each commit."""

    def __init__(self, codec: Codec) -> None:
        self.converters = column_converters(codec)
        self._fast = fast_converters(codec)
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
