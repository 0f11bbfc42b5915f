"""The snapshot's column-at-a-time identity of text and uuid keyed rows is record_keys' and
partitioning's own, on any text."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from sluiceway.common.partitioning import id_slot
from sluiceway.common.record_keys import key_text
from sluiceway.producers.snapshot_keys import key_texts, text_slots

ODD = ['"', "\\", "/", "\b\f\n\r\t", "\x00\x01\x1f\x7f", "ü ✓ 😀", "\u2028", "", '["/"]']


@given(st.lists(st.sampled_from(ODD) | st.text(), max_size=30))
def test_key_texts_and_slots_are_key_text_and_id_slot(values: list[str]) -> None:
    texts = key_texts(pa.array(values, pa.string()))
    assert texts.to_pylist() == [key_text([v]) for v in values]
    assert text_slots(texts).tolist() == [id_slot(key_text([v])) for v in values]


def test_a_null_stays_null() -> None:
    assert key_texts(pa.array(["a/b", None])).to_pylist() == ['["a\\u002fb"]', None]
