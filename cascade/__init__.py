"""cascade: a multi-stage recommender served by one Triton Inference Server."""

__version__ = "0.1.0"
