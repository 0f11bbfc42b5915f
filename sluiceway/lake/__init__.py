"""The lake contract: destination grammar, layout, manifest, storage.

Imports only sluiceway.common (tests/unit/test_layers.py).
"""
