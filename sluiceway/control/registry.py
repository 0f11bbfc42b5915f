"""Which runs exist and where each stands.

A run's orders are its RunRecord on ``sw.control.runs``. Its state changes (cancelled,
failed) are appended to ``sw.control.status``; "complete" is never recorded there because
the manifest in the destination is the proof (docs/architecture.md, "The lake contract": a reader
who sees the manifest may trust it). Everything else that was started is "running".
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluiceway.common import control_topics as control
from sluiceway.common.errors import ConfigError
from sluiceway.common.kafka_io import read_control, set_status
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

FINAL = ("complete", "cancelled", "failed")


@dataclass(frozen=True)
class RunState:
    run: RunRecord
    status: str  # running | complete | cancelled | failed
    reason: str | None
    manifest: RunManifest | None
    note: str | None = None  # why a running run is waiting, if it is
    manifest_error: str | None = None  # why its manifest or destination cannot be read

    @property
    def active(self) -> bool:
        return self.status == "running"

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "etl_id": self.run.etl_id, "type": self.run.type, "status": self.status,
            "reason": self.reason, "tenants": list(self.run.tenants),
            "destination": self.run.destination, "started_at": self.run.created_at,
            "completed_at": m.completed_at if m else None, "rows": m.rows() if m else {},
            "files": m.totals.files if m else None, "dead_letters": m.dead_letters if m else None,
            "note": self.note, "manifest_error": self.manifest_error,
            "read_path": self.run.read_path,
        }  # fmt: skip


# Manifests of complete runs by (destination, etl_id): a manifest never changes once written,
# so each is read from the destination once per process, not on every status request.
_COMPLETE: dict[tuple[str, str], RunManifest] = {}
_COMPLETE_MAX = 10_000


@dataclass(frozen=True)
class _Read:
    manifest: RunManifest | None = None
    problem: str | None = None  # why the destination or the manifest cannot be read
    invalid: bool = False  # the manifest exists but is not one


def _manifest(run: RunRecord, s3: S3Settings) -> _Read:
    """The run's manifest, read-only: a status request must not create a deleted
    destination or write to it."""
    import pyarrow as pa

    from sluiceway.lake import reader

    cached = _COMPLETE.get((run.destination, run.etl_id))
    if cached is not None:
        return _Read(cached)
    try:
        found = reader.run_manifest(reader.open_readonly(run.destination, s3), run.etl_id)
    except reader.ManifestError as exc:
        return _Read(problem=_one_line(exc), invalid=True)
    except (ConfigError, OSError, pa.ArrowException) as exc:
        return _Read(problem=f"destination unreadable: {_one_line(exc)}")
    if found is None:
        return _Read()
    if len(_COMPLETE) >= _COMPLETE_MAX:
        _COMPLETE.pop(next(iter(_COMPLETE)))
    _COMPLETE[(run.destination, run.etl_id)] = found
    return _Read(found)


def _text(value: Any) -> str | None:
    """A free-text field of a control record: a newer writer may have made it structured."""
    return None if value is None else str(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def states(
    kafka: KafkaSettings, s3: S3Settings, wanted: Callable[[RunRecord], bool] | None = None
) -> list[RunState]:
    """Every run (or those ``wanted``), oldest first. Only these have their manifest read:
    reading one is a round trip to the destination, and S3 is far away."""
    runs = control.decode_each("runs", read_control(kafka, "runs"), RunRecord.from_json)
    chosen = [r for r in runs.values() if wanted is None or wanted(r)]
    recorded = control.decode_each("status", read_control(kafka, "status"), control.json_object)
    notes = control.decode_each("notes", read_control(kafka, "notes"), control.json_object)
    return [_state(run, s3, recorded, notes) for run in sorted(chosen, key=lambda r: r.etl_id)]


def _state(
    run: RunRecord, s3: S3Settings, recorded: dict[str, Any], notes: dict[str, Any]
) -> RunState:
    read = _manifest(run, s3)
    entry = recorded.get(run.etl_id, {})
    status = "complete" if read.manifest else str(entry.get("status", "running"))
    reason = _text(entry.get("reason"))
    if read.invalid:
        # The sink writes a manifest only at the end: the run ended, but its result cannot
        # be trusted. Failed releases the destination and stops its workers.
        status, reason = "failed", read.problem
    if status not in FINAL:
        status = "running"
    # a note left by a worker that died while waiting says nothing about a finished run
    note = _text(notes.get(run.etl_id, {}).get("note")) if status == "running" else None
    return RunState(run, status, reason, read.manifest, note, read.problem)


def state(kafka: KafkaSettings, s3: S3Settings, etl_id: str | None) -> RunState:
    """One run by id, or the latest readable one when no id is given."""
    raw = {k.decode(errors="replace"): v for k, v in read_control(kafka, "runs").items()}
    ids = sorted(raw)
    if not ids:
        raise ConfigError("no export runs yet; start one with: sluiceway export start")
    target = etl_id or next((i for i in reversed(ids) if _readable(raw[i])), ids[-1])
    if target not in ids:
        raise ConfigError(f"run {etl_id!r} not found; known runs end with {ids[-1]}")
    found = states(kafka, s3, lambda r: r.etl_id == target)
    if not found:
        topic = kafka.control_topic("runs")
        raise ConfigError(f"the record of run {target} on {topic} cannot be read; see the log")
    return found[0]


def _readable(value: bytes) -> bool:
    try:
        RunRecord.from_json(value)
    except control.ControlRecordError:
        return False
    return True


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
    return stop_local_workers(log_dir, item.run.etl_id)


def after_cancel(kafka: KafkaSettings, s3: S3Settings, item: RunState, reason: str) -> RunState:
    """The run's state once its cancel is recorded: cancelled, unless it wrote its manifest
    meanwhile. A manifest wins (``_state``): the run completed before the cancel took, and
    saying "cancelled" now would be contradicted by every later read."""
    found = states(kafka, s3, lambda r: r.etl_id == item.run.etl_id)
    if found and found[0].status == "complete":
        return found[0]
    return RunState(item.run, "cancelled", reason, None)


def stop_local_workers(log_dir: Path, etl_id: str) -> list[int]:
    """Signal the run's workers started on this machine (their pids sit beside their logs).

    A pid file outlives its worker, and the pid may since name another process: only a
    process that is still this run's worker (``sluiceway <stage> --run ETL_ID``, leading its
    own process group as launched) is signalled."""
    stopped = []
    for pid_file in log_dir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            if not _is_run_worker(pid, pid_file.stem, etl_id):
                continue
            os.killpg(pid, signal.SIGTERM)
            stopped.append(pid)
        except (ValueError, ProcessLookupError, PermissionError):
            continue
    return stopped


def _is_run_worker(pid: int, stage: str, etl_id: str) -> bool:
    if pid <= 0 or os.getpgid(pid) != pid:  # getpgid: ProcessLookupError when it is gone
        return False
    args = _command_line(pid)
    runs = {args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--run"}
    return etl_id in runs and stage in args and any("sluiceway" in a for a in args)


def _command_line(pid: int) -> list[str]:
    """The process's arguments; /proc where there is one, else ps (macOS)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            return [a.decode(errors="replace") for a in proc.read_bytes().split(b"\0") if a]
        except OSError:
            return []
    found = subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return found.stdout.split()
