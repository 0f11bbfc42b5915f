"""Which runs exist and where each stands.

A run's orders are its RunRecord on ``sw.control.runs``. Its state changes (cancelled,
failed) are appended to ``sw.control.status``; "complete" is never recorded there because
the manifest in the destination is the proof (docs/architecture.md, "The lake contract": a reader
who sees the manifest may trust it). Everything else that was started is "running".
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluiceway.errors import ConfigError, StackDownError
from sluiceway.kafka_io import ensure_topics, producer, read_control
from sluiceway.runs import RunRecord
from sluiceway.settings import KafkaSettings, S3Settings

FINAL = ("complete", "cancelled", "failed")


@dataclass(frozen=True)
class RunState:
    run: RunRecord
    status: str  # running | complete | cancelled | failed
    reason: str | None
    manifest: dict[str, Any] | None
    note: str | None = None  # why a running run is waiting, if it is

    @property
    def active(self) -> bool:
        return self.status == "running"

    def to_dict(self) -> dict[str, Any]:
        totals = (self.manifest or {}).get("totals", {})
        return {
            "etl_id": self.run.etl_id, "type": self.run.type, "status": self.status,
            "reason": self.reason, "tenants": list(self.run.tenants),
            "destination": self.run.destination, "started_at": self.run.created_at,
            "completed_at": (self.manifest or {}).get("completed_at"),
            "rows": {t: i["rows"] for t, i in (self.manifest or {}).get("tables", {}).items()},
            "files": totals.get("files"), "dead_letters": (self.manifest or {}).get("dead_letters"),
            "note": self.note,
        }  # fmt: skip


def set_status(kafka: KafkaSettings, etl_id: str, status: str, reason: str | None = None) -> None:
    topic = kafka.control_topic("status")
    ensure_topics(kafka, [topic], 1, {"cleanup.policy": "compact"})
    record = {
        "etl_id": etl_id,
        "status": status,
        "reason": reason,
        "at": datetime.now(UTC).isoformat(),
    }
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=etl_id.encode(), value=json.dumps(record).encode())
    if prod.flush(30) != 0:
        raise StackDownError(f"could not record the status of run {etl_id} on {topic}")


def set_note(kafka: KafkaSettings, etl_id: str, note: str | None) -> None:
    """Record why a running run waits; None clears it (a tombstone on the compacted topic)."""
    topic = kafka.control_topic("notes")
    ensure_topics(kafka, [topic], 1, {"cleanup.policy": "compact"})
    value = None
    if note is not None:
        value = json.dumps({"etl_id": etl_id, "note": note, "at": datetime.now(UTC).isoformat()})
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=etl_id.encode(), value=None if value is None else value.encode())
    if prod.flush(30) != 0:
        raise StackDownError(f"could not record the note of run {etl_id} on {topic}")


def _manifest(run: RunRecord, s3: S3Settings) -> dict[str, Any] | None:
    from sinks.layout import run_manifest_path
    from sinks.manifest import read_json
    from sinks.storage import open_lake

    try:
        found = read_json(open_lake(run.destination, s3), run_manifest_path(run.etl_id))
    except ConfigError:
        return None  # the destination is gone or unwritable: the run cannot be complete
    return dict(found) if found else None


def states(
    kafka: KafkaSettings, s3: S3Settings, wanted: Callable[[RunRecord], bool] | None = None
) -> list[RunState]:
    """Every run (or those ``wanted``), oldest first. Only these have their manifest read:
    reading one is a round trip to the destination, and S3 is far away."""
    runs = [RunRecord.from_json(v) for v in read_control(kafka, "runs").values()]
    runs = [r for r in runs if wanted is None or wanted(r)]
    recorded = {k.decode(): json.loads(v) for k, v in read_control(kafka, "status").items()}
    notes = {k.decode(): json.loads(v) for k, v in read_control(kafka, "notes").items()}
    found = []
    for run in sorted(runs, key=lambda r: r.etl_id):
        manifest = _manifest(run, s3)
        entry = recorded.get(run.etl_id, {})
        status = "complete" if manifest else entry.get("status", "running")
        # a note left by a worker that died while waiting says nothing about a finished run
        note = notes.get(run.etl_id, {}).get("note") if status == "running" else None
        found.append(RunState(run, status, entry.get("reason"), manifest, note))
    return found


def state(kafka: KafkaSettings, s3: S3Settings, etl_id: str | None) -> RunState:
    """One run by id, or the latest when no id is given."""
    ids = sorted(k.decode() for k in read_control(kafka, "runs"))
    if not ids:
        raise ConfigError("no export runs yet; start one with: sluiceway export start")
    target = etl_id or ids[-1]
    if target not in ids:
        raise ConfigError(f"run {etl_id!r} not found; known runs end with {ids[-1]}")
    return states(kafka, s3, lambda r: r.etl_id == target)[0]


def active_at(kafka: KafkaSettings, s3: S3Settings, destination: str) -> RunState | None:
    for candidate in states(kafka, s3, lambda r: r.destination == destination):
        if candidate.active:
            return candidate
    return None


def cancel(kafka: KafkaSettings, item: RunState, log_dir: Path, reason: str) -> list[int]:
    """Mark a running run cancelled (also one whose workers died), releasing its destination,
    and stop its workers on this machine; returns their pids."""
    if not item.active:
        raise ConfigError(f"run {item.run.etl_id} is already {item.status}; nothing to cancel")
    set_status(kafka, item.run.etl_id, "cancelled", reason)
    return stop_local_workers(log_dir)


def stop_local_workers(log_dir: Path) -> list[int]:
    """Signal the run's workers started on this machine (their pids sit beside their logs)."""
    stopped = []
    for pid_file in log_dir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.killpg(pid, signal.SIGTERM)
            stopped.append(pid)
        except (ValueError, ProcessLookupError, PermissionError):
            continue
    return stopped
