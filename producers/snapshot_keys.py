"""The identity of a snapshot chunk's events keyed by one text or uuid column, a column at a
time: ``entity_id`` as ``record_keys.key_text`` writes it and the number ``partition_for``
spreads it by (``partitioning.id_slot``). Pure.

``key_text`` of one value is ``json.dumps([value], ensure_ascii=False)`` without spaces,
then every ``/`` written as ``\\u002f``. ``json`` escapes only the quote, the backslash and
the characters below U+0020 (``\\b \\f \\n \\r \\t`` short, the others as ``\\u00xx``), so
those few replacements give its text exactly (tests/unit/test_snapshot_keys.py compares
them on random texts).
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# the backslash first: the others bring backslashes of their own
_ALWAYS = [("\\", "\\\\"), ('"', '\\"'), ("/", "\\u002f")]
_CONTROL = [(chr(c), _SHORT.get(chr(c), f"\\u{c:04x}")) for c in range(0x20)]
_ANY_CONTROL = "[\\x00-\\x1f]"


def key_texts(values: pa.Array) -> pa.Array:
    """``key_text([v])`` of each value (as string; null stays null)."""
    text = values.cast(pa.string())
    for plain, escaped in _ALWAYS:
        text = pc.replace_substring(text, plain, escaped)
    if pc.any(pc.match_substring_regex(text, _ANY_CONTROL), min_count=0).as_py():
        for plain, escaped in _CONTROL:
            text = pc.replace_substring(text, plain, escaped)
    return pc.binary_join_element_wise('["', text, '"]', "")


def text_slots(key_texts: pa.Array) -> npt.NDArray[np.int64]:
    """``id_slot`` of each (non-null) key text: its CRC-32. Neither Arrow nor numpy has a
    CRC-32 of each value, so zlib's is called per key (a tenth of a microsecond)."""
    keys = key_texts.cast(pa.binary()).to_pylist()
    return np.fromiter((zlib.crc32(k) for k in keys), np.int64, len(keys))
