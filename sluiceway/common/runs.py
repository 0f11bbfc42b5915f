"""Export runs: their identity, their record on the control topic, and their markers.

A run is announced by a JSON record on the compacted ``sw.control.runs`` topic, keyed by
its ``etl_id``. Every worker of the run (processor, sink) reads its orders from there, so
workers can sit on other machines and need nothing but the ``etl_id``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from sluiceway.common.control_topics import json_object, with_extra
from sluiceway.common.errors import ConfigError

RUN_TYPES = ("full", "delta", "continuous")
FORMATS = ("parquet", "csv")
# Header names on run-topic messages. The end marker closes one run-topic partition.
MARKER_HEADER = "sw-marker"
END_MARKER = b"end"


def new_etl_id(now: datetime | None = None) -> str:
    """Sortable, unique and safe in paths, e.g. ``20261121T235959Z-4f2a9c01d3b7e655``.

    64 random bits: runs started in one second must not share a run topic or consumer
    groups (16 bits collided for 7% of 100 runs). Starting a run also refuses an id whose
    topic or record exists (``sluiceway.control.export.claim_run_id``)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(8)}"


def etl_id_time(etl_id: str) -> datetime:
    """The UTC start time encoded in an ``etl_id``."""
    try:
        return datetime.strptime(etl_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(
            f"etl_id {etl_id!r} is malformed; expected YYYYMMDDTHHMMSSZ-<16 hex digits>"
        ) from exc


# topic -> partition -> offset
Offsets = dict[str, dict[int, int]]


@dataclass(frozen=True)
class RunRecord:
    """What a run must do. Offsets are per change topic and partition.

    ``start`` is where reading begins (0 for a full run) and ``cut`` the high watermark
    taken when the run started: a run reads ``start <= offset < cut``.
    """

    etl_id: str
    type: str
    tenants: tuple[str, ...]
    entities: tuple[str, ...]
    destination: str
    run_topic: str
    run_partitions: int
    start: Offsets
    cut: Offsets
    format: str = "parquet"
    spec: dict[str, Any] = field(default_factory=dict)  # RunSpec.public_dict(): no secret
    # sluiceway.common.policy.effective_policy of the spec (no secret, only its fingerprint); every
    # manifest of the run records it, so a delta proves it continues its chain's policy
    policy: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # a replay (`sluiceway replay --to TIME`) is a full run whose cut is TIME: kept as ISO 8601
    replay_to: str | None = None
    # sluiceway.common.fingerprint of the spec's pii_secret (never the secret): a processor whose
    # own key differs refuses the run, so no run mixes hashes of two keys
    secret_fingerprint: str | None = None
    # how the run reads its partitions, decided with the cut (sluiceway/common/read_path.py):
    # {"path": "scan" | "index", "rule": ..., "inputs": {...}}; None (older runs): scan
    read_path: dict[str, Any] | None = None
    # fields of a newer version's record, kept so that rewriting the record keeps them
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> bytes:
        known = asdict(self)
        extra = known.pop("extra")
        return json.dumps({**extra, **known}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        """The record; ControlRecordError naming the problem when it cannot be one."""
        return with_extra(cls, _RECORD, json_object(data), "a run record")

    @property
    def export_date(self) -> datetime:
        return etl_id_time(self.etl_id)


_RECORD = TypeAdapter(RunRecord)
