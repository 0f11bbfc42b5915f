"""An Atlassian Data pipeline client, unchanged, against the real stack over real HTTP.

The server runs under uvicorn on 127.0.0.1; the test speaks to it with httpx using only the
documented requests (paths under /rest/datapipeline/1.0 and /latest, query parameters,
bodies, the Bearer and X-Atlassian-Token headers). Nothing Sluiceway-specific is called on
the API: a fresh server with a captured source must export the whole instance to the
default path. What the files hold is compared with the source database.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import uvicorn
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.common.schema_versions import columns_of, latest_version
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.sinks.csv_file import escape_line_breaks
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack
from tests.net import free_port
from tests.polling import wait_for

pytestmark = pytest.mark.integration
V1 = "/rest/datapipeline/1.0"
LATEST_PATH = "/rest/datapipeline/latest"
TOKEN = "integration-token-dp-0b7d5e"
SQL_TABLES = {"project": "projects", "user": "users", "issue": "issues", "comment": "comments",
              "worklog": "worklogs"}  # fmt: skip


@contextmanager
def served(services: Services) -> Iterator[httpx.Client]:
    """The control API under uvicorn on a free loopback port, and a documented client."""
    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dp-api", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to listen")
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Atlassian-Token": "no-check",
               "Accept": "application/json"}  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
            yield c
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def client(
    kafka: KafkaSettings, local_stack: Stack, cli: Cli, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[httpx.Client]:  # fmt: skip
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "15")
    cli("capture", "--snapshot-only")
    # the server's home (its default export path) is this test's own
    monkeypatch.setenv("SLUICEWAY_STACK_HOME", str(tmp_path / "home"))
    services = Services.build(kafka, local_stack.s3, SecretStr(TOKEN), roots=str(tmp_path))
    with served(services) as http:
        yield http
        for job in http.get(f"{V1}/history").json():
            if job["status"] == "STARTED":
                http.delete(f"{V1}/export", params={"jobId": str(job["jobId"])})


def check_status_types(status: dict[str, Any]) -> None:
    """Every documented field of the export status, with its documented type."""
    documented = {"jobId", "nodeId", "status", "startTime", "completedTime", "cancelledTime",
                  "config", "errors", "warnings", "optedOutEntities", "rootExportPath",
                  "schema", "statistics"}  # fmt: skip
    assert documented <= set(status), documented - set(status)
    assert isinstance(status["jobId"], int) and isinstance(status["nodeId"], str)
    for name in ("startTime", "completedTime", "cancelledTime"):
        assert status[name] is None or datetime.fromisoformat(status[name]).tzinfo is not None
    config = status["config"]
    assert isinstance(config["exportFrom"], str) and isinstance(config["forcedExport"], bool)
    for name in ("errors", "warnings"):
        assert all(set(e) == {"key", "message"} for e in status[name])
    assert all(
        isinstance(e["type"], str) and all(isinstance(k, str) for k in e["identifiers"])
        for e in status["optedOutEntities"]
    )
    assert isinstance(status["rootExportPath"], str)
    assert isinstance(status["schema"]["version"], int)
    assert status["schema"]["status"] in ("ACTIVE", "DEPRECATED")
    stats = status["statistics"]
    assert isinstance(stats["exportedEntities"], int) and isinstance(stats["writtenRows"], int)


def finished(http: httpx.Client) -> dict[str, Any] | None:
    status: dict[str, Any] = http.get(f"{LATEST_PATH}/export").json()
    assert status["status"] in ("STARTED", "COMPLETED"), status
    return status if status["status"] == "COMPLETED" else None


def refusal(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors and all(set(e) == {"key", "message"} for e in errors)
    return str(errors[0]["key"])


FILE_NAME = re.compile(r"^([a-z]+)s_job(\d+)_(\d+)_(\d{8}T\d{6}Z)\.csv$")


def exported(root: Path, job_id: int, version: int) -> dict[str, tuple[list[str], list[list[str]]]]:
    """table -> (header, rows) of a job's files: one per entity, named as documented."""
    files = sorted(root.rglob("*.csv"))
    assert [f.parent for f in files] == [root] * len(files)  # no folders below the job's
    found: dict[str, tuple[list[str], list[list[str]]]] = {}
    for path in files:
        named = FILE_NAME.match(path.name)
        assert named, path.name
        assert (int(named[2]), int(named[3])) == (job_id, version), path.name
        with path.open(newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle, strict=True))
        assert named[1] not in found
        found[named[1]] = (header, rows)
    assert sorted(found) == sorted(ENTITIES)
    return found


def source_texts(pg: PostgresSettings, opted_out: str) -> dict[tuple[str, str], str]:
    """(tenant, issue id) -> description, for the issues an export includes."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tenant_id, id, description FROM issues WHERE project_key <> %s", (opted_out,)
        )
        return {(str(t), str(i)): d or "" for t, i, d in cur.fetchall()}


def source_counts(pg: PostgresSettings, since: datetime, opted_out: str) -> dict[str, int]:
    """Rows per entity updated at or after ``since``, outside the opted-out project."""
    project = "JOIN issues i ON i.tenant_id = t.tenant_id AND i.id = t.issue_id"
    where = {
        "project": "t.key <> %(key)s", "user": "TRUE", "issue": "t.project_key <> %(key)s",
        "comment": "i.project_key <> %(key)s", "worklog": "i.project_key <> %(key)s",
    }  # fmt: skip
    counts = {}
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for entity, table in SQL_TABLES.items():
            join = project if entity in ("comment", "worklog") else ""
            cur.execute(
                f"SELECT count(*) FROM {table} t {join} WHERE {where[entity]} "
                "AND t.updated >= %(since)s",
                {"key": opted_out, "since": since},
            )
            counts[entity] = int(cur.fetchone()[0])  # type: ignore[index]
    return counts


def a_project_key(pg: PostgresSettings) -> str:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT key FROM projects ORDER BY tenant_id, id LIMIT 1")
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def test_a_data_pipeline_client_works_unchanged(
    client: httpx.Client, source_db: PostgresSettings, tmp_path: Path
) -> None:
    http = client
    default = tmp_path / "home" / "data-pipeline" / "export"
    assert http.get(f"{V1}/ping").status_code == 200
    assert http.get(f"{V1}/export").json()["status"] == "NOT_STARTED"
    assert http.get(f"{V1}/config/export-path").json() == {"path": str(default)}

    key = a_project_key(source_db)
    added = http.post(f"{V1}/config/optout", json={"type": "PROJECT", "keys": [key]})
    assert added.status_code == 200, added.text
    assert http.get(f"{LATEST_PATH}/config/optout").json()["entities"] == [
        {"type": "PROJECT", "identifiers": [key]}
    ]

    before = datetime.now(UTC)
    first = http.post(f"{LATEST_PATH}/export")  # no parameters: the last 365 days
    assert first.status_code == 202, first.text
    started = first.json()
    check_status_types(started)
    assert started["jobId"] == 1 and started["status"] == "STARTED"
    assert started["rootExportPath"] == str(default / "1")
    assert started["optedOutEntities"] == [{"type": "PROJECT", "identifiers": [key]}]
    assert started["schema"] == {"version": latest_version(), "status": "ACTIVE"}
    export_from = datetime.fromisoformat(started["config"]["exportFrom"])
    assert abs(export_from - (before - timedelta(days=365))) < timedelta(minutes=5)
    assert refusal(http.post(f"{V1}/export"), 409) == "export.in.progress"

    done = wait_for(lambda: finished(http), 300, "job 1 to complete")
    check_status_types(done)
    assert done["completedTime"] and done["cancelledTime"] is None and done["errors"] == []
    files = exported(default / "1", 1, latest_version())
    expected = source_counts(source_db, export_from, key)
    assert {t: len(rows) for t, (_, rows) in files.items() if rows} == {
        t: n for t, n in expected.items() if n
    }
    assert done["statistics"]["writtenRows"] == sum(expected.values())

    asked = {"fromDate": "2000-01-01T00:00:00Z", "forceExport": "true", "schemaVersion": "1"}
    second = http.post(f"{V1}/export", params=asked)
    assert second.status_code == 202, second.text
    assert second.json()["jobId"] == 2 and second.json()["config"]["forcedExport"] is True
    assert second.json()["schema"] == {"version": 1, "status": "DEPRECATED"}
    done = wait_for(lambda: finished(http), 300, "job 2 to complete")
    files = exported(default / "2", 2, 1)
    since = datetime(2000, 1, 1, tzinfo=UTC)
    assert {t: len(rows) for t, (_, rows) in files.items()} == source_counts(source_db, since, key)
    for entity in ENTITIES:
        assert files[entity][0] == [*columns_of(1, entity), "_tenant_id"]  # version 1's
    assert done["statistics"]["exportedEntities"] == len(ENTITIES)
    header, rows = files["issue"]
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    texts = {(c["_tenant_id"], c["id"]): c["description"] for c in cells}
    # line breaks come as \n (Data pipeline's default); quotes, commas, backslashes as they are
    wanted = {k: escape_line_breaks(v, "\\n") for k, v in source_texts(source_db, key).items()}
    assert texts == wanted
    assert any("\\" in t for t in texts.values()) and any('"' in t for t in texts.values())
    assert refusal(http.delete(f"{V1}/export", params={"jobId": "2"}), 409) == "export.not.running"
    assert refusal(http.delete(f"{V1}/export", params={"jobId": "9"}), 404) == "export.not.found"

    runs = tmp_path / "home" / "runs"
    earlier = set(runs.iterdir())
    third = http.post(f"{V1}/export", params={"fromDate": "2000-01-01T00:00:00Z"})
    assert third.status_code == 202 and third.json()["jobId"] == 3
    # The demo's export takes a few seconds, and a cancel that comes after its manifest is
    # too late (the job is COMPLETED). Its processor, frozen before it can end a partition,
    # keeps the job running until the cancel is recorded; thawed, it gets the cancel's
    # SIGTERM.
    (run_dir,) = set(runs.iterdir()) - earlier
    processor = int((run_dir / "process.pid").read_text())
    os.killpg(processor, signal.SIGSTOP)
    try:
        cancelled = http.delete(f"{V1}/export", params={"jobId": ""})
    finally:
        os.killpg(processor, signal.SIGCONT)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLATION_REQUESTED"  # its workers still run
    assert cancelled.json()["cancelledTime"]

    def cancel_settled() -> dict[str, Any] | None:
        status: dict[str, Any] = http.get(f"{V1}/export").json()
        assert status["status"] in ("CANCELLATION_REQUESTED", "CANCELLED"), status
        return status if status["status"] == "CANCELLED" else None

    check_status_types(wait_for(cancel_settled, 60, "the cancel to settle"))
    history = http.get(f"{V1}/history").json()
    assert [(j["jobId"], j["status"]) for j in history] == [
        (3, "CANCELLED"), (2, "COMPLETED"), (1, "COMPLETED"),
    ]  # fmt: skip

    custom = tmp_path / "exports"
    assert http.put(f"{V1}/config/export-path", json={"path": str(custom)}).json() == {
        "path": str(custom)
    }
    moved = http.post(f"{LATEST_PATH}/export", params={"fromDate": "2030-01-01T00:00:00Z"})
    assert moved.json()["jobId"] == 1 and moved.json()["rootExportPath"] == str(custom / "1")
    wait_for(lambda: finished(http), 300, "the first job of the new path to complete")
    assert http.delete(f"{V1}/config/export-path").json() == {"path": str(default)}
    assert json.loads(http.get(f"{V1}/config/schema").text)["current"] == latest_version()

    schedule = {"fromDate": "2026-01-01", "repeatDays": ["MONDAY", "THURSDAY"],
                "startTime": "02:30", "schemaVersion": 1}  # fmt: skip
    put = http.put(f"{V1}/config/schedule", json=schedule)
    assert put.status_code == 200, put.text
    view = http.get(f"{LATEST_PATH}/config/schedule").json()
    assert view == put.json() and view["repeatDays"] == ["MONDAY", "THURSDAY"]
    assert view["startTime"] == "02:30" and view["schemaVersion"] == 1
    assert isinstance(view["timeZone"], str) and datetime.fromisoformat(view["nextRunTime"])
    assert http.delete(f"{V1}/config/schedule").status_code == 204
    assert refusal(http.get(f"{V1}/config/schedule"), 404) == "schedule.not.found"
