"""The wheel as a user installs it: a fresh venv outside the checkout, commands run from an
empty directory, against the running stack. Nothing may come from the checkout (schemas,
stack files) and no state may land in site-packages or the working directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pyarrow.parquet as pq
import pytest

from sluiceway import exit_codes
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.producers.source import source_tables
from tests.catalogs import ENTITIES
from tests.conftest import Stack, isolated, lake_files
from tests.repo import ROOT

pytestmark = pytest.mark.integration
TENANT = "tenant-001"
BUILD_LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", ".sluiceway", "__pycache__",
                   ".*_cache", ".hypothesis", "demo-lake", "benchmarks")  # fmt: skip


@dataclass(frozen=True)
class Installed:
    """The installed ``sluiceway`` command, run from an empty folder with its own state."""

    bin: Path
    cwd: Path
    env: dict[str, str]
    pg: PostgresSettings

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "sluiceway"), *args], cwd=self.cwd, env={**self.env, **env},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip


def build_and_install(root: Path) -> Path:
    dist, venv, src = root / "dist", root / "venv", root / "src"
    # a copy: setuptools builds in the source tree, and a stale build/ there could leak in
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    [wheel] = dist.glob("sluiceway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sluiceway/_schemas/sluiceway.event.IssueEvent.avsc" in names
    assert "sluiceway/_stack_files/kafka/pom.xml" in names
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # from pip's cache (no --no-cache-dir); --no-compile: byte-compiling the thousands of
    # modules of the dependencies took a good part of the install, and Python compiles
    # what it imports anyway
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-compile", str(wheel)],
        check=True, timeout=1200, capture_output=True,
    )  # fmt: skip
    return venv / "bin"


def user_env(root: Path, kafka: KafkaSettings, pg: PostgresSettings) -> dict[str, str]:
    """The caller's environment minus every Sluiceway setting, plus the test's isolation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICEWAY_", "PYTHON"))}
    env |= {
        "XDG_DATA_HOME": str(root / "data"),  # where state goes when SLUICEWAY_HOME is unset
        "SLUICEWAY_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "SLUICEWAY_KAFKA_PORT": str(kafka.port),
        "SLUICEWAY_PG_PORT": str(pg.port),
        "SLUICEWAY_PG_DBNAME": pg.dbname,
    }
    return env


@pytest.fixture(scope="module")
def installed(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    bin_dir = build_and_install(root)
    for kafka, pg, _cli in isolated(local_stack):
        cwd = root / "empty"
        cwd.mkdir()
        sluiceway = Installed(bin_dir, cwd, user_env(root, kafka, pg), pg)
        for args in (("source", "seed", "--tenants", "2", "--issues-per-tenant", "10"),
                     ("capture", "--snapshot-only")):  # fmt: skip
            proc = sluiceway(*args)
            assert proc.returncode == 0, proc.stderr
        yield sluiceway


def test_version_is_the_package_version(installed: Installed) -> None:
    proc = installed("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "sluiceway 0.1.0"


def test_check_passes_against_the_stack(installed: Installed, tmp_path: Path) -> None:
    proc = installed("check", "--dest", str(tmp_path / "lake"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(line.startswith("ok") for line in proc.stdout.splitlines()), proc.stdout
    assert not (tmp_path / "lake").exists()  # checked, not created


def test_check_names_a_wrong_postgres_port(installed: Installed) -> None:
    proc = installed("check", SLUICEWAY_PG_PORT="1")
    assert proc.returncode == exit_codes.TRANSIENT, proc.stdout + proc.stderr
    [failed] = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.startswith("FAIL postgres: cannot connect to PostgreSQL at 127.0.0.1:1/")
    assert "fix: start PostgreSQL" in failed and "SLUICEWAY_PG_" in failed


def _source_counts(pg: PostgresSettings) -> dict[str, int]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        counts = {}
        for entity in ENTITIES:
            cur.execute(
                f"SELECT count(*) FROM {source_tables()[entity]} WHERE tenant_id = %s", (TENANT,)
            )
            counts[entity] = cur.fetchall()[0][0]
    conn.close()
    return counts


def test_a_full_export_lands_files(installed: Installed, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    proc = installed("export", "start", "--tenant", TENANT, "--dest", str(lake), "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    counts = _source_counts(installed.pg)
    assert result["rows"] == counts and counts["issue"] == 10
    files = lake_files(lake)
    assert files and sum(pq.ParquetFile(f).metadata.num_rows for f in files) == sum(counts.values())
    # state went to the per-user data directory, not the checkout, site-packages or the cwd
    logs = Path(installed.env["XDG_DATA_HOME"]) / "sluiceway" / "runs" / result["etl_id"]
    assert (logs / "sink.log").is_file()
    assert list(installed.cwd.iterdir()) == []
    assert not list(installed.bin.parent.rglob(".sluiceway"))


def test_a_failed_run_exits_5(installed: Installed, tmp_path: Path) -> None:
    # the sink worker cannot start with this codec, so the run fails while the command waits
    proc = installed(
        "export", "start", "--tenant", TENANT, "--dest", str(tmp_path / "lake"), "--wait",
        "--json", SLUICEWAY_SINK_COMPRESSION="bogus",
    )  # fmt: skip
    assert proc.returncode == exit_codes.RUN_FAILED, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert error["kind"] == "run_failed" and "sink worker exited with code 3" in error["error"]
