"""``sluiceway migrate``: copy one tenant into another tenant of a target database, continuously.

A migration is a run chain (a full export, then deltas) of tenant A remapped to tenant B in
a working lake; ``logic`` holds the pure parts (id map, which runs to apply, how a delta's
rows become upserts and deletes, state transitions, verify's comparison), ``target`` the
target database (one transaction per applied run, with the migration's state row) and
``worker`` the loop that ``migrate start`` runs until ``migrate cutover``.
"""
