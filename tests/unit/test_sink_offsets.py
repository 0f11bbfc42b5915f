"""The sink's offset bookkeeping across owners: what a commit says and what it allows."""

from __future__ import annotations

from sluiceway.sinks.offsets import OffsetTracker, PartitionCommit, parse_commit


def test_commit_metadata_round_trips_and_foreign_metadata_says_nothing() -> None:
    commit = PartitionCommit(42, dead_letters=3, upstream=2, end=True)
    assert parse_commit(42, commit.metadata()) == commit
    assert parse_commit(-1001, None) == PartitionCommit(0)  # nothing committed yet
    assert parse_commit(7, "not json") == PartitionCommit(7)


def test_offsets_stop_at_open_files_and_pass_the_end_marker() -> None:
    tracker = OffsetTracker(2)
    for offset in range(10):
        tracker.saw(0, offset)
    assert tracker.saw_end(1, 5, upstream=4)
    commits = tracker.committable({0: 6})
    assert commits[0] == PartitionCommit(6)
    assert commits[1] == PartitionCommit(6, upstream=4, end=True)
    tracker.committed(commits)
    assert tracker.ended == {1}


def test_a_second_end_marker_ends_nothing_new() -> None:
    tracker = OffsetTracker(1)
    assert tracker.saw_end(0, 5, upstream=1)
    assert not tracker.saw_end(0, 9, upstream=0)
    assert tracker.committable({})[0] == PartitionCommit(10, upstream=1, end=True)


def test_dead_letters_count_once_committed_past_and_continue_with_the_next_owner() -> None:
    tracker = OffsetTracker(1)
    for offset in range(10):
        tracker.saw(0, offset)
    tracker.dead_lettered(0, 2)
    tracker.dead_lettered(0, 8)
    commits = tracker.committable({0: 5})  # rows from 5 on are in an open file
    assert commits[0].dead_letters == 1  # offset 8 is read again by whoever resumes at 5
    tracker.committed(commits)
    successor = OffsetTracker(1)
    successor.take_over(0, parse_commit(5, commits[0].metadata()))
    successor.saw(0, 8)
    successor.dead_lettered(0, 8)
    assert successor.committable({})[0].dead_letters == 2


def test_taking_over_an_ended_partition_ignores_what_follows_its_marker() -> None:
    tracker = OffsetTracker(1)
    tracker.take_over(0, PartitionCommit(11, end=True))
    assert tracker.ended == {0} and tracker.markers == {0: 10}
    assert not tracker.saw_end(0, 12, upstream=0)
