"""Online serving stages: the code each Triton model wraps, runnable in process too."""
