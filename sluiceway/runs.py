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

from sluiceway.errors import ConfigError

RUN_TYPES = ("full", "delta", "continuous")
FORMATS = ("parquet", "csv")
# Header names on run-topic messages. The end marker closes one run-topic partition.
MARKER_HEADER = "sw-marker"
END_MARKER = b"end"


def new_etl_id(now: datetime | None = None) -> str:
    """Sortable, unique and safe in paths, e.g. ``20261121T235959Z-4f2a``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def etl_id_time(etl_id: str) -> datetime:
    """The UTC start time encoded in an ``etl_id``."""
    try:
        return datetime.strptime(etl_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(
            f"etl_id {etl_id!r} is malformed; expected YYYYMMDDTHHMMSSZ-xxxx"
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
    # sluiceway.policy.effective_policy of the spec (no secret, only its fingerprint); every
    # manifest of the run records it, so a delta proves it continues its chain's policy
    policy: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # a replay (`sluiceway replay --to TIME`) is a full run whose cut is TIME: kept as ISO 8601
    replay_to: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        raw: dict[str, Any] = json.loads(data)
        raw["tenants"] = tuple(raw["tenants"])
        raw["entities"] = tuple(raw["entities"])
        for name in ("start", "cut"):
            raw[name] = {t: {int(p): int(o) for p, o in ps.items()} for t, ps in raw[name].items()}
        return cls(**raw)

    @property
    def export_date(self) -> datetime:
        return etl_id_time(self.etl_id)
