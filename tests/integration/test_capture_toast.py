"""An update that leaves a large (TOASTed) value unchanged lands as a complete row.

PostgreSQL does not send a TOASTed value an update left alone: pgoutput marks it unchanged,
wal2json leaves it out. The captured event must still carry it (the old row has it under
REPLICA IDENTITY FULL; pgoutput without it reads the row back by key), and the lake must
reconstruct to the source.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import psycopg2
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli
from tests.integration.test_capture import (
    _normalise,
    latest_by_key,
    read_change_topics,
    snapshot_done,
    source_rows,
    start_capture,
    wait_caught_up,
)
from tests.integration.test_reconstruct import assert_equal, keyed, reconstruct
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


def _execute(pg: PostgresSettings, statement: str, *args: object) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _stored_out_of_line(pg: PostgresSettings) -> int:
    """Bytes in the comments table's TOAST table: proof the big value lives there."""
    ((size,),) = _execute(pg, "SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                              "WHERE oid = 'comments'::regclass")  # fmt: skip
    return int(str(size))


@pytest.mark.parametrize(
    ("plugin", "identity"), [("pgoutput", "FULL"), ("wal2json", "FULL"), ("pgoutput", "DEFAULT")]
)
def test_an_update_leaving_a_toasted_value_unchanged_lands_whole(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str,
    plugin: str, identity: str,
) -> None:  # fmt: skip
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5", "--seed", "12")
    _execute(source_db, f"ALTER TABLE comments REPLICA IDENTITY {identity}")
    ((comment_id,),) = _execute(source_db, "SELECT min(id) FROM comments")
    slot = f"sw_{unique}"
    capture = start_capture(cli, tmp_path, slot, SLUICEWAY_CAPTURE_PLUGIN=plugin)
    # random bytes as base64: ~20 kB that compress too little to stay inline
    big = base64.b64encode(os.urandom(15_000)).decode()
    where = "WHERE tenant_id = %s AND id = %s"
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        _execute(source_db, f"UPDATE comments SET body = %s {where}", big, TENANT, comment_id)
        assert _stored_out_of_line(source_db) > 0
        _execute(source_db, "UPDATE comments SET update_author_id = 424242, updated = now() "
                            f"{where}", TENANT, comment_id)  # fmt: skip
        wait_caught_up(source_db, slot, capture, timeout=120)
        lake = tmp_path / "lake"
        cli.json("export", "start", "--tenant", TENANT, "--type", "full", "--dest", str(lake),
                 "--wait")  # fmt: skip
    finally:
        capture.stop()
    key = ("comment", f"{TENANT}/{comment_id}".encode())
    truth = source_rows(source_db)
    event = latest_by_key(read_change_topics(kafka))[key].event
    assert event is not None and event["op"] == "u"
    assert event["after"]["update_author_id"] == 424242 and event["after"]["body"] == big
    assert {k: _normalise(v) for k, v in event["after"].items()} == truth[key]
    out = tmp_path / "comment.parquet"
    reconstruct(cli, lake, "comment", str(out))
    expected = {
        (k[1].decode().split("/")[0], int(k[1].decode().split("/")[1])): row
        for k, row in truth.items()
        if k[0] == "comment"
    }
    assert_equal(keyed(pq.read_table(out).to_pylist()), expected, "comments reconstructed")
