"""Feature workflows: ops, fit, transform, artifact save/load (NVTabular vocabulary on pandas/numpy)."""
