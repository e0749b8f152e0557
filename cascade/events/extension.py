"""Items added after training, in the retrieval index: the index extension.

``cascade items upsert`` embeds items that the export's index lacks with the export's item tower
(``artifacts/retrieval/item_tower.onnx``, from their attributes through the same fitted workflow
training used) and publishes them, cumulatively, as::

    feature_repo/index_extension/<version>/item_ids.npy     int64 [M] raw ids (not in the base index)
    feature_repo/index_extension/<version>/embeddings.npy   float32 [M, D]
    feature_repo/index_extension/LATEST                     the current version

The extension is published BEFORE the item snapshot that carries the items' attributes. Index row
``n_base + j`` is extension item j: the ``retrieval`` stage adds the vectors to a copy of its base
index (:func:`extend_index`), ``item_features`` maps those rows to ids (:func:`extended_item_ids`);
until a stage has the snapshot with the new items, their rows gather as missing (unavailable, never
recommended), so a refresh race can only hide a new item for a moment, never show a wrong one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cascade.errors import SchemaError

EXTENSION_DIR = "index_extension"
LATEST = "LATEST"
KEEP = 3


@dataclass(frozen=True)
class IndexExtension:
    version: str
    item_ids: np.ndarray  # int64 [M]
    embeddings: np.ndarray  # float32 [M, D]

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


def latest_extension_version(feature_repo: Path) -> str | None:
    try:
        return (Path(feature_repo) / EXTENSION_DIR / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_extension(feature_repo: Path, version: str | None = None) -> IndexExtension | None:
    version = version or latest_extension_version(feature_repo)
    if version is None:
        return None
    folder = Path(feature_repo) / EXTENSION_DIR / version
    return IndexExtension(version, np.load(folder / "item_ids.npy").astype(np.int64),
                          np.load(folder / "embeddings.npy").astype(np.float32))


def publish_extension(feature_repo: Path, item_ids: np.ndarray, embeddings: np.ndarray) -> str:
    """Write a new cumulative extension version and point LATEST at it (atomically, last)."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(item_ids):
        raise SchemaError(f"index extension: {len(item_ids)} item ids for embeddings of shape {embeddings.shape}")
    if len(np.unique(item_ids)) != len(item_ids):
        raise SchemaError("index extension: item ids must be unique")
    root = Path(feature_repo) / EXTENSION_DIR
    root.mkdir(parents=True, exist_ok=True)
    previous = latest_extension_version(feature_repo)
    version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    if previous and version <= previous:
        version = previous + "1"  # stay monotonic (lexicographic) under clock skew
    staging = root / f".tmp-{os.getpid()}-{version}"
    staging.mkdir()
    np.save(staging / "item_ids.npy", item_ids)
    np.save(staging / "embeddings.npy", embeddings)
    (staging / "meta.json").write_text(json.dumps({"version": version, "items": len(item_ids),
                                                   "dim": int(embeddings.shape[1])}, indent=2))
    os.replace(staging, root / version)
    pointer = root / f".{LATEST}.tmp-{os.getpid()}"
    pointer.write_text(version + "\n")
    os.replace(pointer, root / LATEST)
    for old in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return version


def extend_index(base_index: object, extension: IndexExtension | None) -> object:
    """A copy of ``base_index`` with the extension's vectors added as rows n_base.. (the base
    index object itself is never changed)."""
    if extension is None or not len(extension):
        return base_index
    import faiss

    if extension.embeddings.shape[1] != base_index.d:
        raise SchemaError(f"index extension {extension.version}: dim {extension.embeddings.shape[1]} != index dim {base_index.d}")
    index = faiss.clone_index(base_index)
    index.add(np.ascontiguousarray(extension.embeddings, dtype=np.float32))
    return index


def extended_item_ids(base_item_ids: np.ndarray, extension: IndexExtension | None) -> np.ndarray:
    if extension is None or not len(extension):
        return base_item_ids
    return np.concatenate([base_item_ids, extension.item_ids])


class ExtensionWatcher:
    """Polls ``index_extension/LATEST`` at most every ``refresh_seconds`` (one small file read)."""

    def __init__(self, feature_repo: Path, refresh_seconds: float = 30.0) -> None:
        self.feature_repo = Path(feature_repo).resolve()
        self.refresh_seconds = float(refresh_seconds)
        self.version: str | None = None
        self._last_check = float("-inf")

    def poll(self) -> IndexExtension | None:
        """The extension when a newer one was published since the last poll, else None."""
        import time

        now = time.monotonic()
        if now - self._last_check < self.refresh_seconds:
            return None
        self._last_check = now
        version = latest_extension_version(self.feature_repo)
        if version is None or version == self.version:
            return None
        extension = load_extension(self.feature_repo, version)
        self.version = version
        return extension


def gather_beyond(catalog, rows: np.ndarray):
    """``EncodedCatalog.gather`` for candidate rows past the catalog's end: rows of an index
    extension the catalog has not loaded yet (retrieval polled it first). They come back as
    missing items (id -1, null features, no category, unavailable), so they are never recommended
    until the catalog with their attributes is in."""
    from cascade.online.catalog import CandidateFeatures

    beyond = rows >= len(catalog.item_ids)
    safe = np.where(beyond, 0, rows)
    part = catalog.gather(safe)
    return CandidateFeatures(
        np.where(beyond, -1, part.item_ids), part.cat, part.cont, part.lists,
        np.where(beyond, 0, part.category_keys), part.available & ~beyond, part.snapshot_version)
