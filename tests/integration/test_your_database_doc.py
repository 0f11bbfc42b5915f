"""docs/your-database.md, followed as written: its example tables are created (from the
page's own ``sql`` block) in a fresh database and filled with rows the demo never had, then
every block the page marks ``<!-- doc-step: NAME -->`` runs as a subprocess with the
installed ``sluiceway`` command, from an empty folder, in the order the page gives them:
the config file, discover, (the edit the page describes), check, capture (in the background,
as the page says to run it), waiting for it, a full export, the application's writes, a
delta export, and reading the result. Only the connection settings (and this test's own
topic prefix, slot and state folder) are set in the environment.

The source, read with SQL, is the truth: the full export's Parquet files equal the source as
it was, and the reconstructed tables the page writes equal the source after the writes,
cell for cell, for the exported tenants only, without the column the edit excluded."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pyarrow.parquet as pq
import pytest
import yaml

from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.repo import ROOT

pytestmark = pytest.mark.integration
DOC = ROOT / "docs" / "your-database.md"
STEP = re.compile(
    r"<!-- doc-step: (?P<name>[a-z-]+)(?P<options>[^>]*?) -->\n"
    r"```(?P<lang>\w+)\n(?P<body>.*?)\n```",
    re.S,
)
STEPS = ("config", "discover", "check", "capture", "wait", "export-full", "export-delta", "read")
EXPORTED = ("1", "2")  # the page exports organisations 1 and 2; 3 stays out
TABLES = {"warehouses": ("id",), "parcels": ("parcel_no",)}  # the record key after org_id


@dataclass(frozen=True)
class Step:
    name: str
    options: str
    body: str


def doc_steps() -> dict[str, Step]:
    found = [
        Step(m["name"], m["options"].strip(), m["body"]) for m in STEP.finditer(DOC.read_text())
    ]
    assert tuple(s.name for s in found) == STEPS, "the page's steps changed: update this test"
    return {s.name: s for s in found}


def example_sql() -> str:
    """The page's own ``sql`` block: the example application's tables."""
    [block] = re.findall(r"```sql\n(.*?)\n```", DOC.read_text(), re.S)
    return block


@dataclass(frozen=True)
class User:
    """A user's shell: the installed command first on PATH, an empty working folder, and
    no Sluiceway setting but the connection (and this test's isolation)."""

    cwd: Path
    env: dict[str, str]

    def run(self, step: Step) -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", step.body], cwd=self.cwd, env=self.env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"step {step.name} failed ({proc.returncode}):\n{proc.stderr}"
        return proc.stdout

    @contextmanager
    def background(self, step: Step) -> Iterator[subprocess.Popen[bytes]]:
        log = (self.cwd.parent / f"{step.name}.log").open("wb")
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", step.body], cwd=self.cwd, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # what the page says stops it cleanly
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            log.close()


def user_shell(root: Path, kafka: KafkaSettings, pg: PostgresSettings, unique: str) -> User:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "sluiceway").is_file(), "the sluiceway command is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICEWAY_", "PYTHON"))}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "SLUICEWAY_PG_HOST": pg.host, "SLUICEWAY_PG_PORT": str(pg.port),
        "SLUICEWAY_PG_DBNAME": pg.dbname, "SLUICEWAY_PG_USER": pg.user,
        "SLUICEWAY_PG_PASSWORD": pg.password.get_secret_value(),
        "SLUICEWAY_KAFKA_BOOTSTRAP": kafka.servers,
        # isolation from other tests on the same servers: slot names are cluster-wide
        "SLUICEWAY_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "SLUICEWAY_CAPTURE_SLOT": f"sw_{unique}",
        "SLUICEWAY_HOME": str(root / "home"),
    }  # fmt: skip
    work = root / "work"
    work.mkdir()
    return User(work, env)


def _execute(pg: PostgresSettings, *statements: str) -> None:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


WEIGHTS = (2.5, 0.1, math.nan, math.inf, -math.inf, None, 1e30, -0.0)
TAGS: tuple[list[str | None] | None, ...] = (
    [],
    ["a", "b,c"],
    [None, ""],
    None,
    ['"q"', "é", "x\\y"],
)
META: tuple[Any, ...] = (None, {"x": 1}, [1, None, "two"], {"é": "line\nbreak"}, "just text", {})
DATES = ("1969-12-31", "1900-02-28", "2024-02-29", None)


def fill(pg: PostgresSettings, seed: int = 14) -> None:
    """Three organisations of warehouses and parcels with NULLs and edge values."""
    rnd = random.Random(seed)
    warehouses = [
        (org * 100 + n, org, f"depot {n}, \"{org}\"", rnd.choice(DATES),
         rnd.choice((None, "0.00", "12345678.99", "-5.5")), rnd.random() < 0.5,
         f"19{rnd.randrange(50, 99)}-06-01 12:00:00.123456+02")
        for org in (1, 2, 3) for n in range(1, 7)
    ]  # fmt: skip
    parcels = [
        (org, n, rnd.choice((None, org * 100 + rnd.randrange(1, 7))), rnd.choice(WEIGHTS),
         rnd.choice(TAGS), psycopg2.extras.Json(rnd.choice(META)) if rnd.random() < 0.8 else None,
         rnd.choice((None, "", "Ünïcode ✓", "x" * 30)),
         rnd.choice((None, "3f2504e0-4f89-41d3-9a0c-0305e82c3301")), f"note {n}",
         "2025-01-01 00:00:00+00")
        for org in (1, 2, 3) for n in range(1, 16)
    ]  # fmt: skip
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(cur, "INSERT INTO warehouses VALUES %s", warehouses)
        psycopg2.extras.execute_values(cur, "INSERT INTO parcels VALUES %s", parcels)
    conn.close()


def application_writes(pg: PostgresSettings) -> None:
    """What the application does between the full export and the delta."""
    _execute(
        pg,
        "UPDATE parcels SET weight_kg = 'NaN', tags = '{}', meta = NULL, label = 'changed', "
        "updated_at = now() WHERE org_id IN (1, 3) AND parcel_no % 4 = 1",
        "UPDATE parcels SET weight_kg = '-Infinity', meta = '{\"n\": {\"a\": [1, 2.5, null]}}', "
        "tags = '{NULL}' WHERE org_id = 2 AND parcel_no % 5 = 0",
        "DELETE FROM parcels WHERE org_id = 1 AND parcel_no % 3 = 0",
        "UPDATE warehouses SET active = NOT active, capacity = 0.01, opened = '1899-12-31', "
        "updated_at = now() WHERE id % 2 = 0",
        "INSERT INTO warehouses VALUES (299, 2, 'new', NULL, NULL, true, now())",
        "INSERT INTO parcels VALUES (2, 99, 299, 1.5, '{x}', '[]', 'new', NULL, 'n', now())",
        "UPDATE parcels SET warehouse_id = NULL WHERE warehouse_id = 101",
        "DELETE FROM warehouses WHERE id = 101",
    )


Key = tuple[str, int]


def source_rows(pg: PostgresSettings, table: str) -> dict[Key, dict[str, Any]]:
    """The exported organisations' rows, keyed by (tenant text, record key), org_id left out."""
    with psycopg2.connect(pg.dsn()) as conn:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        cur.execute(f"SELECT * FROM public.{table} WHERE org_id::text = ANY(%s)", (list(EXPORTED),))
        rows = [dict(r) for r in cur.fetchall()]
    conn.close()
    [key] = TABLES[table]
    return {(str(r.pop("org_id")), r[key]): r for r in rows}


def table_columns(pg: PostgresSettings, table: str) -> set[str]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        )
        names = {r[0] for r in cur.fetchall()}
    conn.close()
    return names


def lake_rows(rows: list[dict[str, Any]], table: str, tenant: str) -> dict[Key, dict[str, Any]]:
    [key] = TABLES[table]
    found = {(r[tenant], r[key]): r for r in rows}
    assert len(found) == len(rows), f"{table}: a key twice"
    return found


def _same(value: Any, kind: str, lake: bool) -> Any:
    """A cell in a form both sides share: real as float32, NaN equal to NaN, JSON parsed
    (psycopg2 parses jsonb; the lake holds its text)."""
    if value is None:
        return None
    if kind == "jsonb":
        return json.loads(value) if lake else value
    if isinstance(value, list):
        return [_same(v, kind.removesuffix("[]"), lake) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return struct.unpack("f", struct.pack("f", value))[0] if kind == "real" else value
    return value


def assert_equal(
    source: dict[Key, dict[str, Any]], lake: dict[Key, dict[str, Any]], columns: dict[str, str],
    table: str,
) -> None:  # fmt: skip
    assert sorted(lake) == sorted(source), f"{table}: keys differ"
    for key, row in source.items():
        for name, kind in columns.items():
            want, got = _same(row[name], kind, False), _same(lake[key][name], kind, True)
            assert got == want, f"{table} {key} {name}: lake {got!r}, source {want!r}"


def edit_catalog(path: Path) -> dict[str, dict[str, str]]:
    """The page's edit (``internal_note`` of ``parcels`` moved to ``exclude``), after checking
    that discover wrote what the page says; returns each entity's captured columns' types."""
    document = yaml.safe_load(path.read_text())
    entities = document["entities"]
    assert list(entities) == ["warehouses", "parcels"]
    parcels = entities["parcels"]
    assert parcels["references"] == [{"entity": "warehouses", "columns": ["warehouse_id"]}]
    parcels["columns"] = [c for c in parcels["columns"] if c["name"] != "internal_note"]
    parcels["exclude"] = [*parcels.get("exclude", []), "internal_note"]
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return {e: {c["name"]: c["type"] for c in entities[e]["columns"]} for e in entities}


def full_export(lake: Path, table: str) -> list[dict[str, Any]]:
    files = sorted(lake.glob(f"*/*/*/daily-export/full-export/{table}/*/part-*.parquet"))
    assert files, f"no full export of {table}"
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_the_your_database_page_runs_as_written(
    kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    steps = doc_steps()
    _execute(source_db, example_sql())
    fill(source_db)
    user = user_shell(tmp_path, kafka, source_db, unique)
    (user.cwd / steps["config"].options.removeprefix("file=")).write_text(steps["config"].body)
    user.run(steps["discover"])
    columns = edit_catalog(user.cwd / "catalog.yaml")
    for table, names in columns.items():  # every column but the tenant's and the excluded
        assert set(names) == table_columns(source_db, table) - {"org_id", "internal_note"}
    assert "ok   catalog" in user.run(steps["check"])
    with user.background(steps["capture"]) as capture:
        user.run(steps["wait"])
        assert capture.poll() is None, "capture stopped"
        before = {t: source_rows(source_db, t) for t in TABLES}
        user.run(steps["export-full"])
        for table in TABLES:
            rows = full_export(user.cwd / "lake", table)
            assert "internal_note" not in rows[0]
            got = lake_rows(rows, table, "_tenant_id")
            assert_equal(before[table], got, columns[table], table)
        application_writes(source_db)
        user.run(steps["export-delta"])
        out = user.run(steps["read"])
        assert capture.poll() is None, "capture stopped"
    assert "changed" in out  # duckdb printed the reconstructed parcels
    for table in TABLES:
        rows = pq.read_table(user.cwd / f"{table}.parquet").to_pylist()
        source = source_rows(source_db, table)
        assert_equal(source, lake_rows(rows, table, "tenant_id"), columns[table], table)
