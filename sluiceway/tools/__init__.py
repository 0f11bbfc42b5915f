"""Tools that work on a finished lake: reconstruct, restore, migrate, backup."""
