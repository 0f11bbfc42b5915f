"""The Avro schemas of change events and entity records.

A package only so that an installed Sluiceway ships them as ``sluiceway._schemas`` and
finds them with importlib.resources (see pyproject.toml's package-dir).
"""
