"""Connecting to the source database with errors a user can act on."""

from __future__ import annotations

from typing import Any

import psycopg2

from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.errors import SourceUnavailableError


def connect(pg: PostgresSettings) -> Any:
    """A psycopg2 connection; a refused or failed login becomes one line naming the server."""
    try:
        return psycopg2.connect(**pg.connect_kwargs())
    except psycopg2.OperationalError as exc:
        first = pg_error_line(exc)
        raise SourceUnavailableError(
            f"source PostgreSQL {pg.user}@{pg.host}:{pg.port}/{pg.dbname} refused the connection: "
            f"{first}; is the stack up (sluiceway stack up)?"
        ) from exc
