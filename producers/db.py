"""Connecting to the source database with errors a user can act on."""

from __future__ import annotations

from typing import Any

import psycopg2

from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.errors import SourceUnavailableError


def connect(pg: PostgresSettings, application_name: str | None = None) -> Any:
    """A psycopg2 connection; a refused or failed login becomes one line naming the server.
    ``application_name`` names the connection in pg_stat_activity, for the source's DBA."""
    kwargs = pg.connect_kwargs()
    if application_name is not None:
        kwargs["application_name"] = application_name
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        first = pg_error_line(exc)
        raise SourceUnavailableError(
            f"source PostgreSQL {pg.user}@{pg.host}:{pg.port}/{pg.dbname} refused the connection: "
            f"{first}; is the stack up (sluiceway stack up)?"
        ) from exc
