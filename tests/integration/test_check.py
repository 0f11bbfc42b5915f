"""sluiceway check against the real PostgreSQL: a role that may not replicate is named, with
the statement that fixes it (wal_level, slots and the plugin are covered by the wheel test)."""

from __future__ import annotations

import json

import pytest
from psycopg2 import sql

from sluiceway import exit_codes
from sluiceway.common.settings import StackSettings
from sluiceway.devstack.postgres import PostgresServer
from tests.conftest import Cli, Stack

pytestmark = pytest.mark.integration


def test_a_role_without_replication_is_named(local_stack: Stack, cli: Cli, unique: str) -> None:
    role = f"sw_norepl_{unique}"
    # only the stack's superuser may create roles (over its Unix socket)
    admin = PostgresServer(StackSettings.for_dev_stack(), local_stack.pg).superuser_connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x' NOREPLICATION")
                    .format(sql.Identifier(role)))  # fmt: skip
    try:
        env = {"SLUICEWAY_PG_USER": role, "SLUICEWAY_PG_PASSWORD": "x"}
        proc = Cli({**cli.env, **env})("check", "--json", check=False)
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        admin.close()
    assert proc.returncode == exit_codes.BAD_INPUT, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["kind"] == "bad_input"
    assert report["problems"] == [
        f"postgres role: role {role} may not replicate; "
        f"fix: ALTER ROLE {role} REPLICATION (as a superuser)",
        "postgres plugin pgoutput: not checked until the problems above are fixed",
    ]
