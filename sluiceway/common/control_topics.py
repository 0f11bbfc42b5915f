"""Reading control records leniently, and how control topics are configured.

Control topics (``sw.control.runs``, ``status``, ``notes``, ``schedules``, ``config``) are
shared by every server, pool and worker, possibly of different versions. One record that
cannot be read (garbage bytes, a missing field, a value of the wrong type) must not stop
the readers of all the others: it is logged, counted in
``sluiceway_control_records_unreadable_total`` and skipped. Fields a reader does not know
(written by a newer version) are kept, so rewriting a record does not drop them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, TypeVar, cast

from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from sluiceway.common.errors import ConfigError

log = logging.getLogger("sluiceway.common.control_topics")
T = TypeVar("T")

UNREADABLE = Counter(
    "sluiceway_control_records_unreadable",
    "Control records skipped because they could not be decoded, by control topic.",
    ["topic"],
)

# Compacted, so a key's older values go; a short segment lets compaction reach recent
# records (the broker never compacts the active segment, 7 days by default), and deleted
# keys' tombstones stay a day so a reader that was away still sees the deletion.
CONTROL_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(3_600_000),
    "delete.retention.ms": str(86_400_000),
    "min.cleanable.dirty.ratio": "0.1",
}


class ControlRecordError(ConfigError):
    """A control record that cannot be decoded; readers skip it."""


def json_object(data: bytes) -> dict[str, Any]:
    """A record's value as a JSON object; ControlRecordError with one line otherwise."""
    try:
        found = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ControlRecordError(f"not JSON ({_one_line(exc)})") from None
    if not isinstance(found, dict):
        raise ControlRecordError(f"a JSON {type(found).__name__}, expected an object")
    return found


def json_value(data: bytes) -> Any:
    """A record's value as any JSON value; ControlRecordError with one line otherwise."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ControlRecordError(f"not JSON ({_one_line(exc)})") from None


def with_extra(cls: type[T], adapter: TypeAdapter[T], raw: Any, what: str) -> T:
    """Validate a record's known fields into dataclass ``cls``, whose ``extra`` field keeps
    the fields it does not know; ControlRecordError naming the first problems otherwise."""
    if not isinstance(raw, dict):
        raise ControlRecordError(f"a JSON {type(raw).__name__}, expected an object")
    known = {f.name for f in fields(cast(Any, cls))} - {"extra"}
    try:
        found = adapter.validate_python({k: v for k, v in raw.items() if k in known})
    except ValidationError as exc:
        problem = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ControlRecordError(f"not {what} ({problem})") from None
    extra = {k: v for k, v in raw.items() if k not in known}
    return cast(T, replace(cast(Any, found), extra=extra))


def decode_each(name: str, raw: dict[bytes, bytes], decode: Callable[[bytes], T]) -> dict[str, T]:
    """Every readable record of control topic ``name`` (as ``read_control`` returns them) by
    key; unreadable ones are reported and skipped."""
    found: dict[str, T] = {}
    for key, value in raw.items():
        try:
            found[key.decode()] = decode(value)
        except (ControlRecordError, UnicodeDecodeError) as exc:
            skipped(name, key.decode(errors="replace"), exc)
    return found


def skipped(name: str, key: str, problem: BaseException) -> None:
    """Report one unreadable record of control topic ``name``."""
    UNREADABLE.labels(topic=name).inc()
    log.warning("skipping unreadable record %r of control topic %s: %s", key, name, problem)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
