"""``sluiceway check``: can the configured servers and destination carry an export?

Each check is one line saying what holds or what is wrong and how to fix it. Nothing is
created: the destination is judged by its nearest existing folder, and the decoding plugin
by a temporary slot that PostgreSQL drops with the session. The one exception: on an S3
destination with server-side encryption configured, a probe object is written and deleted,
since only a write shows whether the store accepts the KMS key.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors

from sluiceway.common.kafka_io import admin, probe
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.kafka_check import cluster_warnings, durability_problems, partition_skew_warnings
from sluiceway.s3_check import credential_problems, write_problems

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    """The outcome of one check; ``fix`` says what to change when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    transient: bool = False  # a server did not answer: retrying later may help

    def line(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return head if self.ok or not self.fix else f"{head}; fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_kafka(kafka: KafkaSettings) -> list[Finding]:
    refused, answered, last = probe(kafka, TIMEOUT_S)
    if refused is not None:  # a wrong password or an untrusted certificate
        return [Finding("kafka", False, refused, "fix the settings named above")]
    if not answered:
        return [
            Finding(
                "kafka", False, f"no broker answers at {kafka.servers} ({last})",
                "start Kafka (sluiceway stack up) or set kafka.host and kafka.port "
                "(SLUICEWAY_KAFKA_HOST, SLUICEWAY_KAFKA_PORT)", transient=True,
            )
        ]  # fmt: skip
    topics = admin(kafka).list_topics(timeout=TIMEOUT_S).topics
    found = [Finding("kafka", True, f"broker answers at {kafka.servers}")]
    partitions = {n: len(t.partitions) for n, t in topics.items()}
    return [*found, _topic_settings(kafka, partitions), *_durability(kafka)]


def _durability(kafka: KafkaSettings) -> list[Finding]:
    problems = durability_problems(kafka, TIMEOUT_S)
    detail = "; ".join(problems) or "every topic has the replicas and min.insync.replicas wanted"
    found = [Finding("kafka durability", not problems, detail, "see each topic's fix above")]
    # a cluster too small to lose a broker is worth knowing, not a reason to refuse a run
    found += [Finding("kafka cluster", True, f"warning: {w}") for w in cluster_warnings(kafka)]
    skew = partition_skew_warnings(kafka, TIMEOUT_S)
    found += [Finding("kafka partitions", True, f"warning: {w}") for w in skew]
    return found


def _topic_settings(kafka: KafkaSettings, partitions: dict[str, int]) -> Finding:
    name, widest = max(
        [("kafka.spread", kafka.spread)]
        + [(f"kafka.tenant_spread[{t!r}]", n) for t, n in kafka.tenant_spread.items()],
        key=lambda item: item[1],
    )
    if widest > kafka.partitions:
        return Finding(
            "kafka topics", False, f"{name}={widest} exceeds kafka.partitions={kafka.partitions}",
            "lower the spread, or raise kafka.partitions before the first snapshot "
            "(docs/topic-layout.md)",
        )  # fmt: skip
    cdc = {n: p for n, p in partitions.items() if n.startswith(kafka.cdc_topic(""))}
    # capture places a tenant by kafka.partitions, a run by the topic's count: when they
    # differ, a run reads other partitions than its tenants' events were written to
    other = sorted(f"{n} has {p}" for n, p in cdc.items() if p != kafka.partitions)
    if other:
        return Finding(
            "kafka topics", False,
            f"kafka.partitions={kafka.partitions} but {', '.join(other)} partitions: capture "
            "places tenants by the setting, runs by the topics' count, and these disagree",
            "set kafka.partitions to the topics' count, or capture into a new "
            "kafka.topic_prefix (docs/topic-layout.md)",
        )  # fmt: skip
    detail = (
        f"prefix {kafka.topic_prefix!r}: {len(cdc)} change topics exist"
        if cdc
        else f"prefix {kafka.topic_prefix!r}: no change topics yet (capture creates them "
        f"with {kafka.partitions} partitions)"
    )
    return Finding("kafka topics", True, detail)


def check_postgres(pg: PostgresSettings, slot: str, plugin: str) -> list[Finding]:
    """``plugin``: the output plugin capture decodes with (the capture setting)."""
    where = f"{pg.host}:{pg.port}/{pg.dbname}"
    try:
        conn = psycopg2.connect(pg.dsn(), connect_timeout=int(TIMEOUT_S))
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            Finding(
                "postgres", False, f"cannot connect to PostgreSQL at {where}: {first}",
                "start PostgreSQL (sluiceway stack up) or set pg.host, pg.port, pg.dbname, "
                "pg.user and pg.password (SLUICEWAY_PG_*)", transient=True,
            )
        ]  # fmt: skip
    conn.autocommit = True
    try:
        return [Finding("postgres", True, f"connected to {where} as {pg.user}"),
                *_capture_prerequisites(conn, pg.user, slot, plugin),
                *check_catalog(conn, pg.catalog)]  # fmt: skip
    finally:
        conn.close()


def _query(conn: Any, statement: str, *args: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchone()


def _capture_prerequisites(conn: Any, user: str, slot: str, plugin: str) -> list[Finding]:
    (wal_level,) = _query(conn, "SHOW wal_level")
    wal = Finding("postgres wal_level", wal_level == "logical", f"wal_level is {wal_level}",
                  "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")  # fmt: skip
    (may,) = _query(
        conn, "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    role = Finding(
        "postgres role", bool(may),
        f"role {user} {'may' if may else 'may not'} replicate",
        f"ALTER ROLE {user} REPLICATION (as a superuser)",
    )  # fmt: skip
    slots = _slots(conn, slot)
    findings = [wal, role, slots]
    if all(f.ok for f in findings):
        findings.append(_plugin(conn, plugin))
    else:
        findings.append(Finding(f"postgres plugin {plugin}", False,
                                "not checked until the problems above are fixed"))  # fmt: skip
    return findings


def _slots(conn: Any, slot: str) -> Finding:
    used, limit, ours = _query(
        conn,
        "SELECT count(*), current_setting('max_replication_slots')::int, "
        "count(*) FILTER (WHERE slot_name = %s) FROM pg_replication_slots",
        slot,
    )
    if ours:
        return Finding("postgres slots", True, f"capture's slot {slot!r} exists")
    detail = f"{used} of {limit} replication slots in use"
    fix = "raise max_replication_slots (restart needed) or drop unused slots"
    return Finding("postgres slots", used < limit, detail, fix)


def _plugin(conn: Any, plugin: str) -> Finding:
    name = f"sw_check_{uuid.uuid4().hex[:12]}"
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '15s'")
            cur.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", (name, plugin))
            cur.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    except psycopg2.errors.QueryCanceled:
        # a logical slot waits for the transactions running when it is created
        return Finding(f"postgres plugin {plugin}", False,
                       "not verified: a test slot waited 15 s for running transactions",
                       "retry when long transactions have ended", transient=True)  # fmt: skip
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0]
        fix = (
            "capture reads pgoutput with the messages option of PostgreSQL 14 and later: "
            "upgrade the server or set capture.plugin to wal2json"
            if plugin == "pgoutput"
            else f"install {plugin} for this PostgreSQL version "
            f"(e.g. apt install postgresql-<version>-{plugin}) or set capture.plugin to pgoutput"
        )
        return Finding(f"postgres plugin {plugin}", False, f"cannot decode with it: {first}", fix)
    return Finding(f"postgres plugin {plugin}", True, "available")


def check_catalog(conn: Any, path: Path | None) -> list[Finding]:
    """The catalog file against the live tables: one finding per difference."""
    from sluiceway.common.catalog import CatalogError, load_catalog
    from sluiceway.common.catalog_check import catalog_problems

    if path is None:
        return [Finding("catalog", True, "not checked (set pg.catalog, SLUICEWAY_PG_CATALOG)")]
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        return [Finding("catalog", False, str(exc), "correct the catalog file")]
    from sluiceway.common.catalog_schemas import check_catalog_schemas

    problems = [*check_catalog_schemas(catalog), *catalog_problems(conn, catalog)]
    if not problems:
        count = len(catalog.entities)
        return [Finding("catalog", True, f"{path}: {count} entities match the database")]
    fix = "edit the catalog or the table (sluiceway source discover writes a fresh catalog)"
    return [Finding("catalog", False, problem, fix) for problem in problems]


def check_destination(destination: str, s3: S3Settings, min_free: int) -> list[Finding]:
    from sluiceway.lake.layout import parse_destination
    from sluiceway.sinks.disk_guard import existing_dir, gigabytes

    dest = parse_destination(destination)
    if dest.kind == "s3":
        return [_s3_bucket(dest.root.split("/")[0], s3)]
    probe = Path(existing_dir(dest.root))
    name = f"destination {dest.root}"
    if not probe.is_dir():
        writable = Finding(name, False, f"{probe} is not a directory", "choose another path")
    elif not os.access(probe, os.W_OK | os.X_OK):
        writable = Finding(name, False, f"{probe} is not writable by this user",
                           f"grant write access to {probe} or choose another path")  # fmt: skip
    else:
        state = "exists" if str(probe) == dest.root else f"would be created under {probe}"
        writable = Finding(name, True, f"writable ({state})")
    free = shutil.disk_usage(probe).free
    enough = min_free < 0 or free >= min_free
    disk = Finding(
        "disk free", enough,
        f"{gigabytes(free)} free at {probe}, guard minimum "
        + ("disabled" if min_free < 0 else gigabytes(min_free)),
        "free some space or lower sink.min_free_bytes (SLUICEWAY_SINK_MIN_FREE_BYTES)",
    )  # fmt: skip
    return [writable, disk]


def _s3_bucket(bucket: str, s3: S3Settings) -> Finding:
    import pyarrow as pa
    from pyarrow import fs as pafs

    from sluiceway.lake.storage import s3_filesystem

    name = f"destination s3://{bucket}"
    missing = credential_problems(s3)
    if missing:
        return Finding(name, False, missing[0], "set SLUICEWAY_S3_ACCESS_KEY/_SECRET_KEY or AWS_*")
    try:
        info = s3_filesystem(s3).get_file_info(bucket)
    except (OSError, pa.ArrowException) as exc:
        fix = "check s3.endpoint and the keys (SLUICEWAY_S3_*)"
        return Finding(name, False, f"S3 at {s3.endpoint_url} refused: {exc}", fix, True)
    if info.type != pafs.FileType.Directory:
        return Finding(name, False, f"bucket {bucket} not found at {s3.endpoint_url}",
                       f"create the bucket {bucket} or set another destination")  # fmt: skip
    if s3.sse is not None:  # only a write shows whether the store takes the encryption asked
        refused = write_problems(s3, f"s3://{bucket}")
        if refused:
            return Finding(name, False, refused[0], "fix SLUICEWAY_S3_SSE / _KMS_KEY_ID")
    return Finding(name, True, f"bucket {bucket} exists at {s3.endpoint_url}")
