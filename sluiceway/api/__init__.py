"""``sluiceway serve``: the REST control API (Atlassian Data pipeline endpoints + native /runs).

``create_app`` in ``sluiceway.api.app`` builds the application from a ``Services`` object.
"""
