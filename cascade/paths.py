"""Where things live: the project root, the build folder, and the most recent export."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY_SOURCES = PROJECT_ROOT / "model_repository"


def build_dir() -> Path:
    """Root for generated artifacts; ``CASCADE_HOME`` overrides ``<project>/build``."""
    return Path(os.environ.get("CASCADE_HOME", PROJECT_ROOT / "build")).resolve()


def latest_export_pointer() -> Path:
    """File holding the path of the most recent ``cascade export`` (used by ``cascade serve``)."""
    return build_dir() / "LATEST_EXPORT"
