"""The source's rate budget (producers/budget.py): rows/s pacing, queries at once, and that a
budget set far too low still lets every read through."""

from __future__ import annotations

import threading

import pytest

from sluiceway.producers.budget import WAIT_SLICE_S, SourceBudget


class FakeTime:
    """A clock that moves only when the budget sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _budget(rate: float, queries: int = 1) -> tuple[SourceBudget, FakeTime]:
    t = FakeTime()
    return SourceBudget(rate, queries, t.clock, t.sleep, on_wait=lambda: None), t


Reads = list[tuple[float, int]]


def _read_all(budget: SourceBudget, t: FakeTime, total: int, wanted: int) -> Reads:
    """Read ``total`` rows in chunks as the snapshot does; (start time, rows) of each read."""
    reads, left = [], total
    while left:
        rows = min(budget.chunk_rows(wanted), left)
        with budget.query(rows):
            reads.append((t.now, rows))
        left -= rows
    return reads


def test_no_rate_means_no_wait_and_whole_chunks() -> None:
    budget, t = _budget(0)
    assert budget.chunk_rows(10_000) == 10_000
    reads = _read_all(budget, t, 50_000, 10_000)
    assert len(reads) == 5 and t.slept == []


def test_one_query_asks_for_at_most_one_second_of_the_budget() -> None:
    budget, _ = _budget(2_500)
    assert budget.chunk_rows(10_000) == 2_500
    assert budget.chunk_rows(1_000) == 1_000
    assert _budget(0.3)[0].chunk_rows(10_000) == 1  # never zero rows


def test_reads_never_run_ahead_of_the_rate() -> None:
    """By any read's start, the rows asked for before it fit ``rate * elapsed`` plus one read."""
    rate = 1_000.0
    budget, t = _budget(rate)
    reads = _read_all(budget, t, 20_000, 10_000)
    before = 0
    for started, rows in reads:
        assert before <= rate * started + 1e-6
        before += rows
    assert reads[-1][0] == pytest.approx((20_000 - 1_000) / rate)


def test_an_idle_spell_earns_no_burst() -> None:
    rate = 100.0
    budget, t = _budget(rate)
    _read_all(budget, t, 100, 100)
    t.now += 3600  # an hour without reads
    started = t.now
    reads = _read_all(budget, t, 300, 100)
    assert [s - started for s, _ in reads] == pytest.approx([0.0, 1.0, 2.0])


def test_a_budget_far_too_low_still_reads_everything() -> None:
    budget, t = _budget(0.5)
    reads = _read_all(budget, t, 5, 10_000)
    assert [rows for _, rows in reads] == [1, 1, 1, 1, 1]
    assert reads[-1][0] == pytest.approx(8.0)  # a row every two seconds
    assert max(t.slept) <= WAIT_SLICE_S  # waits are sliced: the liveness probe keeps beating


def test_waiting_tells_the_liveness_probe() -> None:
    t, beats = FakeTime(), []
    budget = SourceBudget(1.0, 1, t.clock, t.sleep, on_wait=lambda: beats.append(t.now))
    with budget.query(1):
        pass
    with budget.query(1):
        pass
    assert beats  # the second read waited a second, and said so


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SourceBudget(-1, 1)
    with pytest.raises(ValueError):
        SourceBudget(0, 0)


@pytest.mark.parametrize("limit", [1, 2])
def test_queries_at_once_never_exceed_the_limit(limit: int) -> None:
    """Six threads read at once; each records how many readers were inside with it."""
    budget = SourceBudget(0, limit)
    inside, seen, lock = [0], [], threading.Lock()
    go, never = threading.Event(), threading.Event()

    def reader() -> None:
        go.wait()
        for _ in range(50):
            with budget.query(1):
                with lock:
                    inside[0] += 1
                    seen.append(inside[0])
                never.wait(0.002)  # stay inside a moment, so the others pile up
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for th in threads:
        th.start()
    go.set()
    for th in threads:
        th.join(timeout=30)
    assert max(seen) <= limit and budget.peak == max(seen) == limit
    assert budget.in_flight == 0 and budget.reserved == 300


def test_a_statement_takes_a_query_slot_but_no_rows() -> None:
    """A paced budget: a statement neither waits for the rows/s budget nor spends it, but
    while it runs no read may start (the limit counts it)."""
    budget, t = _budget(100.0, queries=1)
    with budget.query(100):
        pass  # the next read may start only a second from now
    with budget.statement():
        assert budget.in_flight == 1 and t.slept == []
        assert not budget._slots.acquire(blocking=False)  # the only slot is taken
    assert budget.reserved == 100 and budget.in_flight == 0
    with budget.query(100):
        assert t.slept == [1.0]  # the statement moved nothing
