"""Example catalogs, one folder each (``jira/catalog.yaml`` is the demo's).

A package only so that an installed Sluiceway ships them as ``sluiceway._examples`` and
finds them with importlib.resources (see pyproject.toml's package-dir).
"""
