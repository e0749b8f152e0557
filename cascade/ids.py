"""Raw id -> row lookups: the one definition used offline (catalog, baselines, training data) and
online (retrieval, item snapshot). Raw ids stay raw int64 everywhere (docs/DESIGN.md); a table's row
of an id is found by one binary search over the ids sorted once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.errors import InvalidInputError, NotFoundError


class IdIndex:
    """Position of raw int64 ids in a fixed id array (the rows of a table)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, raw: np.ndarray) -> np.ndarray:
        """int64 row of each raw id (same shape as ``raw``); -1 for ids not in the array. With
        repeated ids, the first row holding the id."""
        raw = np.asarray(raw, dtype=np.int64)
        if not len(self._sorted):
            return np.full(raw.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, raw), len(self._sorted) - 1)
        return np.where(self._sorted[pos] == raw, self._order[pos], -1).astype(np.int64)

    def known_rows(self, raw: np.ndarray) -> np.ndarray:
        """The rows of the ids that are in the array (unknown ids dropped), in input order."""
        rows = self.rows(np.asarray(raw, dtype=np.int64).reshape(-1))
        return rows[rows >= 0]


class Catalog(IdIndex):
    """Raw item ids in catalog order (items.parquet row order = index row order) and the lookup."""

    def __init__(self, item_ids: np.ndarray) -> None:
        super().__init__(item_ids)
        if len(self._sorted) and (self._sorted[1:] == self._sorted[:-1]).any():
            raise InvalidInputError("item ids of the catalog must be unique (items.parquet item_id)")

    @property
    def item_ids(self) -> np.ndarray:
        return self.ids

    def index_of(self, raw: np.ndarray) -> np.ndarray:
        """Catalog index of each raw id; -1 for ids not in the catalog."""
        return self.rows(raw)

    def raw(self, index: np.ndarray) -> np.ndarray:
        """Raw ids for catalog indices; -1 stays -1."""
        index = np.asarray(index, dtype=np.int64)
        return np.where(index >= 0, self.ids[np.maximum(index, 0)], -1)

    @classmethod
    def from_dataset(cls, dataset_dir: Path) -> "Catalog":
        import pandas as pd

        path = Path(dataset_dir) / "items.parquet"
        if not path.is_file():
            raise NotFoundError(f"{path} is missing; expected a cascade dataset folder")
        return cls(pd.read_parquet(path, columns=["item_id"])["item_id"].to_numpy(np.int64))
