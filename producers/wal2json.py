"""Decoding wal2json (format-version 2) messages into committed transactions.

wal2json sends one JSON message per change between a ``B`` (begin) and a ``C`` (commit)
message; logical messages (``M``) carry our heartbeats. Values arrive as JSON scalars or
PostgreSQL's text output, and are parsed as ``producers/tables.py`` says (shared with the
pgoutput decoder). Numbers are kept as the text wal2json printed (``parse_float``): a
``numeric`` read as a Python float would lose digits.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sluiceway.common.codec import Codec
from sluiceway.producers.decoded import HEARTBEAT_PREFIX, Change, Heartbeat, Transaction
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.events import lsn_to_int
from sluiceway.producers.tables import CapturedTable, relation_table

__all__ = ["Change", "Decoder", "Heartbeat", "Transaction"]

_OPS = {"I": "c", "U": "u", "D": "d"}


class Decoder:
    """Feeds on wal2json messages; returns a Transaction at each commit."""

    def __init__(self, codec: Codec) -> None:
        self.catalog = codec.catalog
        self.tables: dict[tuple[str, str], CapturedTable | None] = {}  # found by relation_table
        self.current: Transaction | None = None

    def feed(self, payload: str) -> Transaction | Heartbeat | None:
        msg: dict[str, Any] = json.loads(payload, parse_float=str, parse_constant=str)
        action = msg["action"]
        if action == "B":
            self.current = Transaction(
                msg["xid"], lsn_to_int(msg["lsn"]), datetime.fromisoformat(msg["timestamp"])
            )
        elif action in _OPS:
            change = self._change(msg)
            if change is not None:
                self._require_txn(action).changes.append(change)
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

    def _change(self, msg: dict[str, Any]) -> Change | None:
        where = (msg["schema"], msg["table"])
        if where not in self.tables:
            self.tables[where] = relation_table(self.catalog, *where)
        table = self.tables[where]
        if table is None:
            # add-tables names a schema-per-tenant table in every schema (``*.name``):
            # one in a schema outside the entity's pattern is not captured
            return None
        op = _OPS[msg["action"]]
        if op == "d":
            values = self._convert(table, msg["identity"])
            tenant, (entity_id, key) = self._key(table, values)
            return Change(table.entity, tenant, entity_id, op, None, key)
        values = self._convert(table, msg["columns"])
        if len(values) < len(table.fast):
            # An unchanged TOASTed column is left out of "columns"; with REPLICA IDENTITY
            # FULL the old row in "identity" still has it. Only those columns are converted.
            old = [c for c in msg.get("identity", ()) if c["name"] not in values]
            values.update(self._convert(table, old))
        missing = [n for n in table.fast if n not in values]
        if missing:
            raise SourceSchemaError(
                f"{'insert into' if op == 'c' else 'update of'} {table.qualified} lacks "
                f"captured columns {missing}; add them to the table or take them out of the "
                f"catalog (an unchanged TOASTed value needs: ALTER TABLE {table.qualified} "
                "REPLICA IDENTITY FULL)"
            )
        tenant, (entity_id, key) = self._key(table, values)
        row = {c: values[c] for c in table.columns}
        return Change(table.entity, tenant, entity_id, op, row, key)

    @staticmethod
    def _key(
        table: CapturedTable, values: dict[str, Any]
    ) -> tuple[str, tuple[int | str, dict[str, Any] | None]]:
        """The tenant, and the event's ``entity_id`` and ``key``."""
        tenant = table.tenant_of(values)
        if tenant is None or any(values.get(k) is None for k in table.key):
            names = " and ".join(table.row_key)
            raise SourceSchemaError(
                f"a change of {table.qualified} carries no {names}: "
                f"the replica identity must cover them; run: ALTER TABLE {table.qualified} "
                "REPLICA IDENTITY FULL (or make them the primary key)"
            )
        return tenant, table.identity(values)

    @staticmethod
    def _convert(table: CapturedTable, columns: list[dict[str, Any]]) -> dict[str, Any]:
        """The captured columns among ``columns`` (others are not in the catalog: skipped)."""
        fast = table.fast
        out: dict[str, Any] = {}
        for column in columns:
            name, value = column["name"], column["value"]
            known = fast.get(name)
            if known is None:
                continue
            if value is None or type(value) is known[0]:
                out[name] = value
            elif column.get("type") == "bytea":
                # wal2json prints bytea's hex output without its "\x"
                out[name] = table.parse(name, "\\x" + value)
            else:
                out[name] = table.parse(name, value)
        return out
