"""The set of raw item ids events may name: the latest published item snapshot's ids (so items
added with ``cascade items upsert`` are accepted once their snapshot is published). A miss
re-checks for a newer snapshot before an id is called unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def snapshot_item_ids(repo_dir: Path, version: str) -> np.ndarray:
    import pyarrow.parquet as pq

    from cascade.features.repo import SNAPSHOT_DIR
    from cascade.features.snapshot import ITEMS_FILE

    table = pq.read_table(Path(repo_dir) / SNAPSHOT_DIR / version / ITEMS_FILE, columns=["item_id"])
    return np.sort(table.column("item_id").to_numpy().astype(np.int64))


class CatalogIds:
    def __init__(self, repo_dir: Path) -> None:
        from cascade.errors import NotFoundError
        from cascade.features.snapshot import latest_version

        self.repo_dir = Path(repo_dir).resolve()
        version = latest_version(self.repo_dir)
        if version is None:
            raise NotFoundError(f"no item snapshot published in {self.repo_dir} (run `cascade features materialize`)")
        self.version = version
        self.ids = snapshot_item_ids(self.repo_dir, version)

    def _known(self, ids: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[pos] == ids

    def refresh(self) -> bool:
        from cascade.features.snapshot import ItemSnapshot

        newer = ItemSnapshot.newer_available(self.repo_dir, self.version)
        if newer is None:
            return False
        self.ids, self.version = snapshot_item_ids(self.repo_dir, newer), newer
        return True

    def contains(self, item_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        known = self._known(ids)
        if not known.all() and self.refresh():
            known = self._known(ids)
        return known
