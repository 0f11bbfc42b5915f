"""What a processor worker reads from and writes into its partitions' commits."""

from __future__ import annotations

from sluiceway.processors.ownership import Committed, metadata, parse_metadata, state_from

TOPICS = ["t.issue", "t.comment"]


def test_metadata_round_trips_through_the_nul_and_what_follows_it() -> None:
    text = metadata(3, True)
    assert text.endswith("\0")
    assert parse_metadata(10, text) == Committed(10, 3, True)
    # what confluent-kafka returns for metadata another client committed: bytes past the end
    assert parse_metadata(10, text + "261129T20@") == Committed(10, 3, True)
    assert parse_metadata(10, '{"dead_letters":1,"end":false}junk') == Committed(10, 1, False)


def test_commits_that_are_not_ours_say_nothing() -> None:
    assert parse_metadata(5, None) == Committed(5)
    assert parse_metadata(5, "") == Committed(5)
    assert parse_metadata(5, "\xff\xfe") == Committed(5)


def test_a_partition_taken_over_continues_from_every_topics_commit() -> None:
    state = state_from([Committed(7, 2, False), Committed(30, 2, False)], TOPICS, 0.0)
    assert state.next == {"t.issue": 7, "t.comment": 30}
    assert state.dead_letters == 2 and not state.marked
    assert not state.done({"t.issue": 8, "t.comment": 30})
    state.next["t.issue"] = 8
    assert state.done({"t.issue": 8, "t.comment": 30})


def test_a_partition_is_ended_only_when_every_topics_commit_says_so() -> None:
    assert state_from([Committed(8, 0, True), Committed(30, 0, True)], TOPICS, 0.0).marked
    assert not state_from([Committed(8, 0, True), Committed(30, 0, False)], TOPICS, 0.0).marked
