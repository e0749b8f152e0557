"""The fitted-workflow artifact: a versioned folder of open formats, no pickles.

```
DIR/
  workflow.json            format version, code version, dataset content hash, created time,
                           graph config, output schema, per-op scalar statistics
  arrays/<p>.<o>.<key>.npy numeric statistics (vocabularies, counts, lookup order)
  arrays/<p>.<o>.<key>.json string vocabularies
```

``<p>`` is the pipeline index and ``<o>`` the op index within it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from cascade.errors import DataValidationError, NotFoundError
from cascade.cache import replace_dir

ARTIFACT_FORMAT_VERSION = 1
WORKFLOW_FILE = "workflow.json"
ARRAYS_DIR = "arrays"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``cascade.__version__`` + a short sha256 of this package's source files."""
    import cascade

    digest = hashlib.sha256()
    for file in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return f"{cascade.__version__}+{digest.hexdigest()[:12]}"


class ArtifactMeta(BaseModel):
    """Provenance of a fitted workflow."""

    format_version: int = ARTIFACT_FORMAT_VERSION
    code_version: str = Field(default_factory=code_version)
    dataset_hash: str = ""
    dataset_name: str = ""
    config_hash: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    engine: str = "cpu"
    train_rows: int = 0
    timestamp_range: tuple[int, int] | None = None
    fit_seconds: float = 0.0


def write_artifact(directory: Path, meta: ArtifactMeta, config: dict[str, Any], schema: list[dict[str, Any]],
                   states: list[list[dict[str, Any]]], arrays: dict[str, np.ndarray]) -> Path:
    """Write into a temporary sibling folder, then rename it over ``directory``."""
    directory = Path(directory).resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        (tmp / ARRAYS_DIR).mkdir()
        for name, array in arrays.items():
            if array.dtype == object:
                (tmp / ARRAYS_DIR / f"{name}.json").write_text(json.dumps([None if v is None else str(v) for v in array]))
            else:
                np.save(tmp / ARRAYS_DIR / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        payload = {"meta": meta.model_dump(mode="json"), "config": config, "output_schema": schema, "state": states}
        (tmp / WORKFLOW_FILE).write_text(json.dumps(payload, indent=1))
        replace_dir(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_artifact(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(workflow.json payload, arrays by name); NotFoundError / DataValidationError when unusable."""
    directory = Path(directory)
    path = directory / WORKFLOW_FILE
    if not path.is_file():
        raise NotFoundError(f"{directory} is not a fitted workflow: {WORKFLOW_FILE} is missing "
                            "(create one with `cascade preprocess fit`)")
    payload = json.loads(path.read_text())
    version = payload.get("meta", {}).get("format_version")
    if version != ARTIFACT_FORMAT_VERSION:
        raise DataValidationError(f"{path}: format_version {version} is not supported (expected {ARTIFACT_FORMAT_VERSION})")
    arrays: dict[str, np.ndarray] = {}
    folder = directory / ARRAYS_DIR
    if folder.is_dir():
        for file in folder.iterdir():
            if file.suffix == ".npy":
                arrays[file.stem] = np.load(file, allow_pickle=False)
            elif file.suffix == ".json":
                values = json.loads(file.read_text())
                array = np.empty(len(values), dtype=object)
                array[:] = values
                arrays[file.stem] = array
    return payload, arrays
