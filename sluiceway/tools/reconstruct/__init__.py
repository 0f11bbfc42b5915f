"""``sluiceway reconstruct``: rebuild a table from a lake's full export and its deltas.

``plan`` (pure) picks the runs from their manifests and proves the chain has no gap;
``lake`` reads manifests and checks the listed files; ``target`` parses ``--out``;
``engine`` runs the one reconstruction SQL (``sql``) in DuckDB and ``write`` commits it.
"""
