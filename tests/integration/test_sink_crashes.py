"""The sink killed with SIGKILL 20 times during a run of >= 500,000 events, local and on S3.

The run's processor finishes first, so the run topic holds every event; then the real
``sluiceway sink`` process is killed at random moments while it writes and restarted each
time. The source database is the truth: at the end the lake must hold every selected row
exactly once, no temporary may remain, every file must respect its caps and the manifest
must describe exactly the files read back.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control import runner
from sluiceway.lake import layout
from sluiceway.producers.source import source_tables
from tests.catalogs import ENTITIES
from tests.conftest import Cli, Stack, isolated
from tests.polling import wait_for

pytestmark = pytest.mark.integration

TENANTS = ("tenant-001", "tenant-002")
ISSUES_PER_TENANT = 50_000  # about 5 rows per issue: >= 500,000 events for both tenants
MIN_EVENTS = 500_000
KILLS = 20
# Small caps so files rotate often and kills find files half written; short lives so that
# a restarted sink (which resumes in about a second) cannot finish the run before kill 20.
MAX_ROWS = 2_500
MAX_BYTES = 1024 * 1024
ROW_GROUP_ROWS = 1_250
# how long after its first new file an incarnation may live: at the batch-decoding sink's
# ~75k events/s, 20 such lives write well under the run's 500k events
MAX_KILL_DELAY_S = 0.25
EARLY_KILL_SHARE = 0.3  # kills that land while joining the group instead of writing
SINK_ENV = {
    "SLUICEWAY_SINK_MAX_ROWS": str(MAX_ROWS),
    "SLUICEWAY_SINK_MAX_BYTES": str(MAX_BYTES),
    "SLUICEWAY_SINK_ROW_GROUP_ROWS": str(ROW_GROUP_ROWS),
}
ROTATE = re.compile(rb"^.*\brotate table=\S+ partition=\d+ .*$", re.MULTILINE)

Pair = tuple[Any, ...]  # (tenant_id, *record key): (tenant_id, id) on the Jira demo


@dataclass(frozen=True)
class Source:
    kafka: KafkaSettings
    pg: PostgresSettings
    cli: Cli
    ids: dict[str, set[Pair]]  # per table, the selected tenants' (tenant_id, id)

    @property
    def events(self) -> int:
        return sum(len(v) for v in self.ids.values())


def source_ids(pg: PostgresSettings) -> dict[str, set[Pair]]:
    out: dict[str, set[Pair]] = {}
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        for entity in ENTITIES:
            cur.execute(
                f"SELECT tenant_id, id FROM {source_tables()[entity]} WHERE tenant_id = ANY(%s)",
                (list(TENANTS),),
            )
            out[entity] = {(t, int(i)) for t, i in cur.fetchall()}
    conn.close()
    return out


@pytest.fixture(scope="module")
def source(local_stack: Stack) -> Iterator[Source]:
    """Seed two tenants (>= 500,000 rows together) and capture them once for both tests."""
    for kafka, pg, cli in isolated(local_stack):
        started = time.monotonic()
        cli("source", "seed", "--tenants", str(len(TENANTS)), "--issues-per-tenant",
            str(ISSUES_PER_TENANT), "--seed", "21", timeout=600)  # fmt: skip
        seeded = time.monotonic()
        cli("capture", "--snapshot-only", timeout=600)
        captured = time.monotonic()
        src = Source(kafka, pg, cli, source_ids(pg))
        print(
            f"\nsource: {src.events} events of {TENANTS} "
            f"({ {t: len(v) for t, v in src.ids.items()} }); "
            f"seed {seeded - started:.1f}s, capture {captured - seeded:.1f}s"
        )
        assert src.events >= MIN_EVENTS
        yield src


@dataclass
class SinkProcess:
    """The real ``sluiceway sink --run`` process, killed and restarted by the test."""

    env: dict[str, str]
    etl_id: str
    log: Path
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_start: int = 0  # where this incarnation's output begins in the log
    kill_log: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"=== test: start {self.starts} of the sink ===\n".encode())
            self.log_start = out.tell()
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            # one static member: a restarted sink gets its partitions back at once
            [sys.executable, "-m", "sluiceway.cli", "sink", "--run", self.etl_id,
             "--member", "crash-test-sink"],
            env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.close()

    def output(self) -> bytes:
        """What the current incarnation has logged so far."""
        with self.log.open("rb") as src:
            src.seek(self.log_start)
            return src.read()

    def rotations(self) -> int:
        return len(ROTATE.findall(self.output()))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, why: str) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kill_log.append(why)

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def pause(seconds: float) -> None:
    """A random, bounded wait between two moments of the test."""
    threading.Event().wait(seconds)


def run_processor(src: Source, etl_id: str, workdir: Path, timeout: float) -> None:
    log = workdir / "process.log"
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "sluiceway.cli", "process", "--run", etl_id],
            env=src.cli.env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]


def kill_repeatedly(
    sink: SinkProcess, rng: random.Random, max_delay: float = MAX_KILL_DELAY_S
) -> None:
    """Kill the sink ``KILLS`` times at random moments, restarting it right away.

    Most kills land while an incarnation writes (after its first new file); the others
    land once it has recovered the lake, while it joins the consumer group and starts to
    read, so a killed member may be left in the group the next incarnation joins.
    """
    for n in range(1, KILLS + 1):
        early = rng.random() < EARLY_KILL_SHARE

        def ready(n: int = n, early: bool = early) -> bool:
            if not sink.running():
                raise AssertionError(
                    f"sink exited ({sink.proc and sink.proc.returncode}) after {n - 1} "
                    f"kills; the run is too short for {KILLS} kills:\n{sink.tail()}"
                )
            return sink.rotations() > 0 or (early and b"resuming:" in sink.output())

        what = "recover the lake" if early else "publish a file"
        wait_for(ready, 180, f"incarnation {sink.starts} to {what}", poll=0.05)
        if early:
            delay = rng.uniform(0.0, max_delay)
            why = f"kill {n}: {delay:.2f}s after it recovered (or wrote)"
        else:
            delay = rng.uniform(0.0, max_delay)
            why = f"kill {n}: {delay:.2f}s after its first new file"
        pause(delay)
        if not sink.running():
            raise AssertionError(
                f"sink exited ({sink.proc and sink.proc.returncode}) before {why}:\n{sink.tail()}"
            )
        sink.kill(why)
        sink.start()


@dataclass(frozen=True)
class Lake:
    fs: pafs.FileSystem
    root: str  # filesystem path of the destination root


def lake_of(destination: str, s3: S3Settings) -> Lake:
    if destination.startswith("s3://"):
        fs = pafs.S3FileSystem(
            endpoint_override=f"{s3.host}:{s3.port}",
            scheme="http",
            access_key=s3.static_keys()[0],
            secret_key=s3.static_keys()[1],
            region=s3.region,
        )
        return Lake(fs, destination.removeprefix("s3://").rstrip("/"))
    return Lake(pafs.LocalFileSystem(), destination.rstrip("/"))


def read_json(lake: Lake, relative: str) -> Any:
    with lake.fs.open_input_stream(f"{lake.root}/{relative}") as src:
        return json.loads(src.read())


def check_lake(
    lake: Lake, etl_id: str, src: Source, keys: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """Every check of the issue's Done-when, against the source and the files read back.

    ``keys``: per table, its record key columns (default: ``id``), as ``src.ids`` holds
    them after the tenant."""
    infos = lake.fs.get_file_info(pafs.FileSelector(lake.root, recursive=True))
    files = {i.path.removeprefix(lake.root + "/"): i for i in infos if i.type == pafs.FileType.File}
    temps = sorted(p for p in files if layout.is_temp_name(layout.basename(p)))
    assert not temps, f"temporaries left in the lake: {temps}"
    parts = {p: i for p, i in files.items() if layout.parse_part_name(layout.basename(p))}
    others = sorted(set(files) - set(parts))
    assert others == sorted([layout.LATEST_MANIFEST, layout.run_manifest_path(etl_id)]), others

    run_manifest = read_json(lake, layout.run_manifest_path(etl_id))
    latest = read_json(lake, layout.LATEST_MANIFEST)
    assert latest["latest"]["etl_id"] == etl_id
    assert latest["latest"] == run_manifest
    assert run_manifest["status"] == "complete"

    listed = {
        entry["path"]: (table, entry)
        for table, summary in run_manifest["tables"].items()
        for entry in summary["files"]
    }
    assert sorted(listed) == sorted(parts), (
        f"files not in the manifest: {sorted(set(parts) - set(listed))[:5]}; "
        f"listed but missing: {sorted(set(listed) - set(parts))[:5]}"
    )
    totals = Counter[str]()
    for table in src.ids:
        summary = run_manifest["tables"][table]
        got: list[Pair] = []
        rows = size = 0
        for entry in summary["files"]:
            path = entry["path"]
            assert f"/{table}/{etl_id}/" in path, path
            info = parts[path]
            columns = ["_tenant_id", *(keys[table] if keys else ["id"])]
            data = pq.read_table(f"{lake.root}/{path}", filesystem=lake.fs, columns=columns)
            assert data.num_rows <= MAX_ROWS, (path, data.num_rows)
            assert info.size <= MAX_BYTES, (path, info.size)
            assert entry["rows"] == data.num_rows, (path, entry, data.num_rows)
            assert entry["bytes"] == info.size, (path, entry, info.size)
            got.extend(zip(*(data.column(c).to_pylist() for c in columns), strict=True))
            rows += data.num_rows
            size += info.size
        assert summary["rows"] == rows, table
        assert summary["bytes"] == size, table
        dupes = [k for k, c in Counter(got).items() if c > 1]
        expected = src.ids[table]
        assert not dupes, f"{table}: {len(dupes)} rows written twice, e.g. {dupes[:3]}"
        missing = expected - set(got)
        extra = set(got) - expected
        assert not missing and not extra, (
            f"{table}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
            f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
        )
        assert len(got) == len(expected), table
        totals["files"] += len(summary["files"])
        totals["rows"] += rows
        totals["bytes"] += size
    assert run_manifest["totals"] == dict(totals)
    return dict(totals)


def destination_for(kind: str, tmp_path: Path, s3: S3Settings) -> str:
    if kind == "s3":
        return f"s3://{s3.bucket}/sink-crashes-{uuid.uuid4().hex[:10]}"
    return str(tmp_path / "lake")


@pytest.mark.timeout(1200)
def sink_through_kills(
    source: Source, etl_id: str, tmp_path: Path, rng: random.Random,
    max_delay: float = MAX_KILL_DELAY_S,
) -> SinkProcess:  # fmt: skip
    """A real sink for the run, SIGKILLed KILLS times at random moments (at most
    ``max_delay`` after an incarnation's first new file), then left to finish; it must end
    with exit 0, started once per kill plus once."""
    sink = SinkProcess({**source.cli.env, **SINK_ENV}, etl_id, tmp_path / "sink.log", tmp_path)
    sink.start()
    try:
        kill_repeatedly(sink, rng, max_delay)
        assert sink.proc is not None
        try:
            code = sink.proc.wait(600)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"sink not done 600s after the last kill:\n{sink.tail()}") from exc
        assert code == 0, f"sink exited {code}:\n{sink.tail()}"
    finally:
        sink.stop()
    assert sink.starts == KILLS + 1
    return sink


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_sink_killed_20_times_writes_every_event_exactly_once(
    source: Source, local_stack: Stack, tmp_path: Path, kind: str
) -> None:
    s3 = local_stack.s3
    destination = destination_for(kind, tmp_path, s3)
    spec = parse_spec({"tenants": list(TENANTS), "destination": destination})
    t0 = time.monotonic()
    run, workers = runner.start_run(spec, source.kafka, s3, launch=False)
    assert workers is None
    run_processor(source, run.etl_id, tmp_path, timeout=600)
    t_processed = time.monotonic()

    seed = f"{kind}-{run.etl_id}"
    rng = random.Random(seed)
    sink = sink_through_kills(source, run.etl_id, tmp_path, rng)
    t_sunk = time.monotonic()

    lake = lake_of(run.destination, s3)
    totals = check_lake(lake, run.etl_id, source)
    t_checked = time.monotonic()
    rotations = len(ROTATE.findall(sink.log.read_bytes()))
    print(
        f"\n{kind}: run {run.etl_id} (rng seed {seed!r}) {totals}; processor "
        f"{t_processed - t0:.1f}s, sink with {KILLS} kills {t_sunk - t_processed:.1f}s "
        f"({rotations} rotations logged), checks {t_checked - t_sunk:.1f}s"
    )
    for why in sink.kill_log:
        print(f"  {why}")
    if kind == "s3":
        lake.fs.delete_dir(lake.root)
