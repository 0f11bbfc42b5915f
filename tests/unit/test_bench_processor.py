"""The processor bench's repeats: interleaved runs, the fastest judged, every rate kept."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks import processor


def test_runs_are_interleaved_and_numbered_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []

    def fake(env: Any, n: int, extra: dict[str, Any]) -> dict[str, Any]:
        calls.append((n, "pii" if extra else "plain"))
        return {"events_per_s": float(n)}

    monkeypatch.setattr(processor, "_time_worker", fake)
    tries = processor._attempts(object(), 2)  # type: ignore[arg-type]
    # each run its own destination (n), the specs alternating
    assert calls == [(0, "plain"), (1, "pii"), (2, "plain"), (3, "pii")]
    assert [t["events_per_s"] for t in tries["plain full export"]] == [0.0, 2.0]


def test_repeat_must_be_positive() -> None:
    args = argparse.Namespace(processor_repeat=0)
    with pytest.raises(SystemExit, match="--processor-repeat 0: expected a positive integer"):
        processor.run(args)
