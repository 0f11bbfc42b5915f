"""Property: whatever the spec, the lake holds exactly what it selects, and no raw PII.

Hypothesis draws a source (tenants, size, seed) and a spec (tenants, entities, fields,
from_date, opt-outs, PII rules); each example seeds a fresh database, captures it, runs
the export on the real stack and checks the files and the run topic against the source.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaError, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.common.kafka_io import consumer, watermarks
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.common.spec_fields import entity_columns
from sluiceway.producers.source import source_tables
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, isolated

pytestmark = pytest.mark.integration
METADATA = {"_tenant_id", "_op", "_deleted", "_position", "_source_ts", "_etl_id"}
# Columns whose values occur nowhere else in the seeded text, so finding one is a leak.
PII_CANDIDATES = ("user.email_address", "user.display_name", "project.name")


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    tenants = draw(st.integers(2, 3))
    chosen = draw(st.lists(st.integers(1, tenants), min_size=1, max_size=tenants, unique=True))
    entities = draw(st.lists(st.sampled_from(ENTITIES), min_size=1, max_size=5, unique=True))
    fields = {
        e: draw(st.lists(st.sampled_from(entity_columns(e)), min_size=1, max_size=4, unique=True))
        for e in entities
        if draw(st.booleans())
    }
    pii = draw(
        st.dictionaries(st.sampled_from(PII_CANDIDATES), st.sampled_from(["drop", "hash", "mask"]))
    )
    issues, seed = draw(st.integers(4, 12)), draw(st.integers(0, 99))
    return {
        "source": {"tenants": tenants, "issues": issues, "seed": seed},
        "spec": {
            "tenants": [f"tenant-{i:03d}" for i in chosen], "entities": entities, "fields": fields,
            "pii": pii, "pii_secret": "property-secret",
        },
        "opt_out_picks": draw(st.lists(st.integers(0, 50), max_size=2)),
        "from_days": draw(st.one_of(st.none(), st.integers(0, 120))),
    }  # fmt: skip


def source_rows(pg: PostgresSettings) -> dict[str, list[dict[str, Any]]]:
    conn = psycopg2.connect(pg.dsn())
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    rows = {}
    for entity in ENTITIES:
        cur.execute(f"SELECT * FROM {source_tables()[entity]}")
        rows[entity] = [dict(r) for r in cur.fetchall()]
    conn.close()
    return rows


def expected_keys(
    rows: dict[str, list[dict[str, Any]]], spec: dict[str, Any], entity: str
) -> set[tuple[str, int]]:
    tenants, opt_out = set(spec["tenants"]), set(spec.get("opt_out", []))
    since = datetime.fromisoformat(spec["from_date"]) if "from_date" in spec else None
    issue_project = {(i["tenant_id"], i["id"]): i["project_key"] for i in rows["issue"]}

    def project_of(row: dict[str, Any]) -> str | None:
        if entity == "project":
            return str(row["key"])
        if entity == "issue":
            return str(row["project_key"])
        if entity in ("comment", "worklog"):
            return issue_project.get((row["tenant_id"], row["issue_id"]))
        return None

    return {
        (r["tenant_id"], r["id"]) for r in rows[entity]
        if r["tenant_id"] in tenants and (since is None or r["updated"] >= since)
        and project_of(r) not in opt_out
    }  # fmt: skip


def raw_pii(rows: dict[str, list[dict[str, Any]]], spec: dict[str, Any]) -> set[str]:
    tenants = set(spec["tenants"])
    found = set()
    for target in spec["pii"]:
        entity, column = target.split(".")
        found |= {str(r[column]) for r in rows[entity] if r["tenant_id"] in tenants and r[column]}
    return found


def run_topic_values(kafka: KafkaSettings, etl_id: str) -> list[bytes]:
    """Every value on the run topic, committed or not: a leak in an aborted batch counts too."""
    topic = kafka.run_topic(etl_id)
    settings = {"isolation.level": "read_uncommitted", "enable.partition.eof": True}
    reader = consumer(kafka, group=f"verify-{time.monotonic_ns()}", **settings)
    parts = watermarks(kafka, topic, range(kafka.partitions))
    reader.assign([TopicPartition(topic, p, 0) for p in parts])
    values: list[bytes] = []
    pending, deadline = set(parts), time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for msg in reader.consume(1000, 0.5):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
            elif err is None:
                values.append(msg.value() or b"")
    reader.close()
    assert not pending, f"could not read {topic} to its end"
    return values


def lake_tables(lake: Path) -> dict[str, pa.Table]:
    tables: dict[str, list[pa.Table]] = {}
    for path in lake.rglob("part-*.parquet"):
        tables.setdefault(path.parent.parent.name, []).append(pq.read_table(path))
    return {t: pa.concat_tables(parts) for t, parts in tables.items()}


def check_lake(
    lake: Path, rows: dict[str, list[dict[str, Any]]], spec: dict[str, Any], result: dict[str, Any]
) -> None:
    tables, secrets = lake_tables(lake), raw_pii(rows, spec)
    rules = {tuple(t.split(".")): rule for t, rule in spec["pii"].items()}
    for entity in ENTITIES:
        table = tables.get(entity)
        if entity not in spec["entities"]:
            assert table is None, f"{entity} was not selected"
            continue
        expected = expected_keys(rows, spec, entity)
        got = (
            set()
            if table is None
            else set(zip(table["_tenant_id"].to_pylist(), table["id"].to_pylist(), strict=True))
        )
        assert got == expected, entity
        assert result["rows"][entity] == len(expected)
        if table is None:
            continue
        wanted = set(spec["fields"].get(entity, entity_columns(entity))) | {"id"}
        wanted -= {c for (e, c), rule in rules.items() if e == entity and rule == "drop"}
        assert set(table.schema.names) == wanted | METADATA, entity
        for name in table.schema.names:
            if pa.types.is_string(table.schema.field(name).type):
                leaked = secrets & set(table[name].to_pylist())
                assert not leaked, f"{entity}.{name} holds raw PII {sorted(leaked)[:3]}"


@pytest.fixture(scope="module")
def stack(local_stack: Stack) -> Stack:
    return local_stack


SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=SLOW)
@given(plan=plans())
def test_lake_holds_exactly_the_selection_and_no_raw_pii(
    stack: Stack, plan: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    for kafka, pg, cli in isolated(stack):
        src = plan["source"]
        cli(
            "source",
            "seed",
            "--tenants",
            str(src["tenants"]),
            "--issues-per-tenant",
            str(src["issues"]),
            "--seed",
            str(src["seed"]),
        )
        cli("capture", "--snapshot-only")
        rows, spec = source_rows(pg), dict(plan["spec"])
        keys = sorted({p["key"] for p in rows["project"]})
        spec["opt_out"] = sorted({keys[i % len(keys)] for i in plan["opt_out_picks"]})
        if plan["from_days"] is not None:
            spec["from_date"] = (
                datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=plan["from_days"])
            ).isoformat()
        lake = tmp_path_factory.mktemp("lake")
        spec["destination"] = str(lake)
        spec_file = lake.parent / f"{lake.name}.json"
        spec_file.write_text(json.dumps(spec))
        # the run topic is read below: keep it past the manifest (it is dropped then by default)
        keeping = Cli({**cli.env, "SLUICEWAY_CLEANUP_RUN_RETENTION_S": "3600"})
        result = keeping.json("export", "start", "--spec", str(spec_file), "--wait")
        check_lake(lake, rows, spec, result)
        secrets = raw_pii(rows, spec)
        for value in run_topic_values(kafka, result["etl_id"]):
            assert not any(s.encode() in value for s in secrets), "raw PII in the run topic"
