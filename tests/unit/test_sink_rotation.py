"""Rotation policy: every reason, and byte prediction that rotates before a cap breaks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sluiceway.sinks.rotation import (
    Caps,
    FileState,
    Incoming,
    RotationReason,
    after_write,
    decide,
    fit_rows,
    overflows_alone,
)

CAPS = Caps(max_rows=10, max_bytes=1_000, max_age_s=5.0)


def state(rows: int = 3, size: int = 300, opened_at: float = 100.0) -> FileState:
    return FileState(caps=CAPS, opened_at=opened_at, schema_id="a", rows=rows, bytes=size)


def incoming(rows: int = 1, size: int = 50, schema_id: str = "a") -> Incoming:
    return Incoming(rows=rows, bytes=size, schema_id=schema_id)


def test_no_rotation_within_caps() -> None:
    assert decide(state(), incoming(rows=7, size=700), now=104.9) is None


def test_rows_cap_is_exact() -> None:
    assert decide(state(rows=9), incoming(rows=1), now=100) is None
    assert decide(state(rows=10), incoming(rows=1), now=100) is RotationReason.ROWS


def test_bytes_predicted_before_the_cap_breaks() -> None:
    assert decide(state(size=900), incoming(size=100), now=100) is None
    assert decide(state(size=900), incoming(size=101), now=100) is RotationReason.BYTES


def test_age() -> None:
    assert decide(state(), incoming(), now=104.99) is None
    assert decide(state(), incoming(), now=105.0) is RotationReason.AGE


def test_schema_change() -> None:
    assert decide(state(), incoming(schema_id="b"), now=100) is RotationReason.SCHEMA_CHANGE


def test_run_end() -> None:
    end = Incoming(rows=0, bytes=0, schema_id="a", run_end=True)
    assert decide(state(), end, now=100) is RotationReason.RUN_END


def test_empty_file_is_never_rotated() -> None:
    huge = incoming(rows=50, size=10**9, schema_id="b")
    assert decide(state(rows=0, size=100), huge, now=10**6) is None


def test_precedence_run_end_then_schema_then_age() -> None:
    end = Incoming(rows=99, bytes=10**9, schema_id="b", run_end=True)
    assert decide(state(), end, now=10**6) is RotationReason.RUN_END
    assert decide(state(), incoming(99, 10**9, "b"), now=10**6) is RotationReason.SCHEMA_CHANGE
    assert decide(state(), incoming(99, 10**9), now=10**6) is RotationReason.AGE


def per_row(size: int) -> Callable[[int], int]:
    return lambda k: 20 + k * size  # a fixed row group overhead + size per row


@pytest.mark.parametrize(
    ("rows", "size", "available", "row_bytes", "expected"),
    [
        (0, 100, 50, 10, 10),  # rows cap of an empty file
        (3, 100, 50, 10, 7),  # rows cap of a partly filled file
        (0, 100, 50, 100, 8),  # bytes: 100 + 20 + 8*100 = 920 <= 1000, 9 rows would be 1020
        (5, 990, 5, 10, 0),  # nothing fits: 990 + 20 + 10 > 1000
        (0, 100, 5, 5_000, 1),  # one oversize row still goes into an empty file
    ],
)
def test_fit_rows_shrinks_the_row_group(
    rows: int, size: int, available: int, row_bytes: int, expected: int
) -> None:
    got = fit_rows(state(rows=rows, size=size), available, per_row(row_bytes))
    assert got == expected


def test_fit_then_write_never_passes_the_cap() -> None:
    current = state(rows=0, size=100)
    bound = per_row(37)
    for _ in range(20):
        take = fit_rows(current, 1_000, bound)
        if take == 0:
            break
        current = after_write(current, take, current.bytes + bound(take) - 10, 10)
        assert current.bytes <= CAPS.max_bytes and current.rows <= CAPS.max_rows
    assert decide(current, incoming(rows=1, size=bound(1)), now=100) in (
        RotationReason.ROWS,
        RotationReason.BYTES,
    )


def test_oversize_row_is_detected() -> None:
    alone = after_write(state(rows=0, size=100), 1, 4_000, 50)
    assert overflows_alone(alone)
    assert not overflows_alone(state())
