from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from psycopg2 import sql

from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.runs import RunRecord, etl_id_time, new_etl_id
from sluiceway.devstack.seed import SeedPlan, copy_value, gen_tenant
from sluiceway.producers.events import lsn_to_int
from sluiceway.producers.source import create_table_sql, source_tables


def test_seed_is_deterministic_and_seed_dependent() -> None:
    plan = SeedPlan(tenants=2, issues_per_tenant=20, seed=1)
    assert list(gen_tenant(plan, 1)) == list(gen_tenant(plan, 1))
    assert list(gen_tenant(plan, 1)) != list(gen_tenant(SeedPlan(2, 20, 2), 1))
    assert list(gen_tenant(plan, 1)) != list(gen_tenant(plan, 2))


def test_seed_shape_is_jira_like() -> None:
    rows = list(gen_tenant(SeedPlan(1, 50, 7), 1))
    by_entity: dict[str, list[dict[str, object]]] = {}
    for entity, row in rows:
        by_entity.setdefault(entity, []).append(row)
    assert len(by_entity["issue"]) == 50
    assert len(by_entity["comment"]) >= 50  # at least one comment per issue
    assert by_entity["worklog"]
    users = {u["id"] for u in by_entity["user"]}
    issues = {i["id"] for i in by_entity["issue"]}
    assert all(c["issue_id"] in issues for c in by_entity["comment"])
    assert all(i["reporter_id"] in users for i in by_entity["issue"])
    assert all("@" in str(u["email_address"]) for u in by_entity["user"])
    texts = "".join(str(i["description"]) for i in by_entity["issue"])
    for needle in ("\n", '"', ",", "é"):
        assert needle in texts
    for entity, items in by_entity.items():
        assert len({r["id"] for r in items}) == len(items), entity


def test_generated_rows_fit_the_avro_schemas() -> None:
    codec = Codec()
    for entity, row in gen_tenant(SeedPlan(1, 10, 3), 1):
        event = {
            "tenant_id": "tenant-001",
            "entity": entity,
            "entity_id": row["id"],
            "op": "r",
            "position": 1,
            "source_ts": datetime(2026, 1, 1, tzinfo=UTC),
            "snapshot": True,
            "after": row,
        }
        assert codec.decode(codec.encode(event))["after"] == row


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\\N"),
        (True, "t"),
        (False, "f"),
        ("a\tb\nc\\d\r", "a\\tb\\nc\\\\d\\r"),
        (date(2026, 2, 3), "2026-02-03"),
        (datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=UTC), "2026-02-03T04:05:06.000007+00:00"),
        (1.5, "1.5"),
    ],
)
def test_copy_value(value: object, text: str) -> None:
    assert copy_value(value) == text


def rendered(part: sql.Composable) -> str:
    """A statement's text without a connection (psycopg2 quotes with one): identifiers in
    double quotes, as PostgreSQL reads them."""
    if isinstance(part, sql.Composed):
        return "".join(rendered(p) for p in part.seq)
    if isinstance(part, sql.Identifier):
        return ".".join('"' + s.replace('"', '""') + '"' for s in part.strings)
    assert isinstance(part, sql.SQL)
    return part.string


def test_tables_and_ddl() -> None:
    assert source_tables()["user"] == "users"
    ddl = rendered(create_table_sql(Codec(), "issue"))
    assert ddl.startswith('CREATE TABLE IF NOT EXISTS "issues" (')
    assert "PRIMARY KEY (tenant_id, id)" in ddl
    assert '"created" timestamptz NOT NULL' in ddl
    assert '"due_date" date,' in ddl
    assert '"assignee_id" bigint,' in ddl


def test_lsn_to_int() -> None:
    assert lsn_to_int("0/0") == 0
    assert lsn_to_int("16/B374D848") == (0x16 << 32) + 0xB374D848


def test_etl_id_sorts_and_parses() -> None:
    early = new_etl_id(datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC))
    late = new_etl_id(datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC))
    assert early.startswith("20261121T235959Z-") and early < late
    assert etl_id_time(early) == datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(ConfigError, match=r"'\.\./x' is malformed"):
        etl_id_time("../x")


def test_run_record_json_round_trip() -> None:
    record = RunRecord(
        etl_id="20261122T000000Z-abcd",
        type="full",
        tenants=("tenant-001",),
        entities=("issue", "user"),
        destination="/tmp/lake",
        run_topic="sw.run.x",
        run_partitions=3,
        start={"sw.cdc.issue": {0: 0, 1: 5}},
        cut={"sw.cdc.issue": {0: 9, 1: 5}},
    )
    assert RunRecord.from_json(record.to_json()) == record


def test_a_plan_with_sizes_gives_each_tenant_its_own_issue_count() -> None:
    plan = SeedPlan(tenants=3, issues_per_tenant=0, seed=4, sizes=(1, 7, 30))
    for index, want in enumerate(plan.sizes, start=1):
        issues = [r for e, r in gen_tenant(plan, index) if e == "issue"]
        assert len(issues) == want
    # a tenant's rows are those of a uniform plan of its size: the same seeder, sized
    assert list(gen_tenant(plan, 2)) == list(gen_tenant(SeedPlan(3, 7, 4), 2))
    with pytest.raises(ValueError, match="2 sizes given for 3 tenants"):
        SeedPlan(3, 0, 4, sizes=(1, 2))
