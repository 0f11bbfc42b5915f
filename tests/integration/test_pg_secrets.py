"""A PostgreSQL password is one value, whatever it holds, and never shows in an error.

Against the real server of the local stack: a role whose password has spaces and a
``sslmode=disable`` of its own logs in through the settings, and a wrong password of the
same shape is refused with a message that quotes none of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing

import psycopg2
import pytest
from psycopg2 import sql
from pydantic import SecretStr

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import PostgresSettings, StackSettings
from sluiceway.devstack.postgres import SUPERUSER, PostgresServer
from sluiceway.producers.db import connect
from sluiceway.producers.errors import SourceUnavailableError
from sluiceway.tools.migrate import target
from tests.conftest import Stack

pytestmark = pytest.mark.integration
PASSWORD = "open sesame sslmode=disable host=elsewhere"


@pytest.fixture
def odd_role(local_stack: Stack) -> Iterator[PostgresSettings]:
    """A login role whose password is ``PASSWORD``; dropped afterwards."""
    role = f"sw_pw_{uuid.uuid4().hex[:8]}"
    socket_dir = PostgresServer(StackSettings(), local_stack.pg).socket_dir
    admin = psycopg2.connect(
        host=str(socket_dir), port=local_stack.pg.port, user=SUPERUSER, dbname="postgres"
    )
    admin.autocommit = True
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
    with closing(admin), admin.cursor() as cur:
        cur.execute(create.format(sql.Identifier(role), sql.Literal(PASSWORD)))
        try:
            yield local_stack.pg.model_copy(update={"user": role, "password": SecretStr(PASSWORD)})
        finally:
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_password_with_spaces_and_options_logs_in(odd_role: PostgresSettings) -> None:
    with closing(connect(odd_role)) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_addr()::text")
        assert cur.fetchone() == (odd_role.user, f"{odd_role.host}/32")
    # the quoted connection string of the settings says the same
    with closing(psycopg2.connect(odd_role.dsn())) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (odd_role.user,)


def test_a_wrong_password_of_that_shape_is_not_shown(odd_role: PostgresSettings) -> None:
    wrong = odd_role.model_copy(update={"password": SecretStr("not it sslmode=disable")})
    with pytest.raises(SourceUnavailableError) as caught:
        connect(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "not it" not in message and "sslmode" not in message
    # a connection string given on the command line that does not parse is not quoted either
    typed = f"host={odd_role.host} port={odd_role.port} user={odd_role.user} password={PASSWORD}"
    with pytest.raises(ConfigError) as refused:
        target.connect(typed)
    assert "sesame" not in str(refused.value) and "elsewhere" not in str(refused.value)
    assert "does not parse" in str(refused.value)
