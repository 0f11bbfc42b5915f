"""The sink's formats: one registry, keyed by the names a run spec may ask for."""

from __future__ import annotations

import pytest

from sluiceway.common.runs import FORMATS
from sluiceway.lake import layout
from sluiceway.lake.errors import RunStateError
from sluiceway.sinks import formats


def test_every_format_a_spec_may_name_has_one_implementation() -> None:
    assert tuple(formats.REGISTRY) == FORMATS
    for name, fmt in formats.REGISTRY.items():
        assert fmt.name == name
        assert formats.by_extension(layout.part_name(0, 7, fmt.extension)) is fmt
    assert formats.named("parquet", "e").batches and not formats.named("csv", "e").batches


def test_an_unknown_format_is_named_with_the_known_ones() -> None:
    with pytest.raises(
        RunStateError, match="run e asks for format 'xlsx'; expected one of parquet"
    ):
        formats.named("xlsx", "e")
