"""When to close a file and open the next one. Pure: no I/O, no clock of its own.

A file is closed *before* a row group that would break one of its caps is written, so
the caps hold for every file that reaches the lake. Byte sizes here are upper bounds
(``sizing``), never after-the-fact measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum


class RotationReason(Enum):
    ROWS = "rows"
    BYTES = "bytes"
    AGE = "age"
    SCHEMA_CHANGE = "schema_change"
    RUN_END = "run_end"
    REBALANCE = "rebalance"  # the partition moves to another sink


@dataclass(frozen=True)
class Caps:
    max_rows: int
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class FileState:
    """What a rotation decision needs to know about one open file.

    ``bytes`` is the bytes written so far plus a bound on the footer those row groups
    need, i.e. a bound on the file's size if it were closed now.
    """

    caps: Caps
    opened_at: float
    schema_id: str
    rows: int = 0
    bytes: int = 0
    row_groups: int = 0


@dataclass(frozen=True)
class Incoming:
    """The row group about to be written (or, with ``run_end``, the end of the input)."""

    rows: int
    bytes: int  # bound on the row group's encoded size plus the footer it adds
    schema_id: str
    run_end: bool = False


def decide(state: FileState, incoming: Incoming, now: float) -> RotationReason | None:
    """Why ``state``'s file must be closed before ``incoming`` is written, or None.

    An empty file is never rotated: its first row group is written even when alone it
    breaks the byte cap, because a row cannot be split (callers log that case).
    """
    if state.rows == 0:
        return None
    if incoming.run_end:
        return RotationReason.RUN_END
    if incoming.schema_id != state.schema_id:
        return RotationReason.SCHEMA_CHANGE
    if now - state.opened_at >= state.caps.max_age_s:
        return RotationReason.AGE
    if state.rows + incoming.rows > state.caps.max_rows:
        return RotationReason.ROWS
    if state.bytes + incoming.bytes > state.caps.max_bytes:
        return RotationReason.BYTES
    return None


def fit_rows(state: FileState, available: int, bound: Callable[[int], int]) -> int:
    """How many of ``available`` rows the file can take as one row group within its caps.

    ``bound(k)`` is the bytes the first k rows would add (monotone in k). Returns 0 when
    not even one row fits a non-empty file, and at least 1 for an empty file.
    """
    if available <= 0:
        return 0
    room_rows = min(available, state.caps.max_rows - state.rows)
    room_bytes = state.caps.max_bytes - state.bytes
    if room_rows > 0 and bound(room_rows) <= room_bytes:
        return room_rows
    low, high = 0, max(room_rows, 0)
    while low < high:  # largest k with bound(k) <= room_bytes
        mid = (low + high + 1) // 2
        if bound(mid) <= room_bytes:
            low = mid
        else:
            high = mid - 1
    if low == 0 and state.rows == 0:
        return 1
    return low


def after_write(state: FileState, rows: int, written_bytes: int, footer_bytes: int) -> FileState:
    """The state once a row group is written: measured bytes plus the footer bound."""
    return replace(
        state,
        rows=state.rows + rows,
        bytes=written_bytes + footer_bytes,
        row_groups=state.row_groups + 1,
    )


def overflows_alone(state: FileState) -> bool:
    """A file whose bound already breaks its byte cap (one oversize row) takes no more."""
    return state.bytes > state.caps.max_bytes
