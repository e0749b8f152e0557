"""Items encoded once per item snapshot.

When an item snapshot is loaded, the item side of the fitted workflow runs ONCE over the whole
catalog (index row order), so a request only gathers encoded rows by candidate row: no per-request
transform, no raw item tensors between stages, no string dictionaries. Every item-entity op of the
workflow is a function of the snapshot row and the fitted state (``Age`` measures against the fitted
reference time, not the request time), so nothing item-side is left to compute at request time; an
op that needed the request time would be computed in :meth:`EncodedCatalog.gather`.

A new snapshot is prepared by :class:`CatalogRefresher` in a background thread and swapped in by
one assignment; a snapshot that fails to load or prepare is rejected (logged, counted through
``on_failure``) and the old one keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from cascade.online.tensors import EncodedLayout, pack_encoded

if TYPE_CHECKING:  # pragma: no cover
    from cascade.features.snapshot import ItemSnapshot
    from cascade.preprocessing import FittedWorkflow

LOG = logging.getLogger(__name__)
CATEGORY_COLUMN = "category"
AVAILABLE_COLUMN = "available"
ENCODE_CHUNK_ROWS = 65_536  # bounds the transform's temporary memory on a 1M-item catalog


def category_key(value: object) -> int:
    """Stable int64 key of a category value: 0 = no category (None, NaN, ""), else the first 8 bytes
    of blake2b(str(value)) (never 0). The same in every process and every snapshot, so category keys
    cross stages as INT64 without a dictionary; business rules compare keys (caps) and look boosts up
    by key. 64-bit keys: a collision among even 10^5 categories has probability ~3e-10."""
    if value is None or (isinstance(value, float) and value != value):
        return 0
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value)
    if not text:
        return 0
    key = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)
    return key or 1


def category_keys(values: np.ndarray) -> np.ndarray:
    """int64 [N] :func:`category_key` of each value (hashes each distinct value once)."""
    arr = np.asarray(values, dtype=object).reshape(-1)
    if not arr.size:
        return np.zeros(0, dtype=np.int64)
    uniques: dict[object, int] = {}
    out = np.empty(arr.size, dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        k = uniques.get(v) if isinstance(v, (str, bytes, int)) else None
        if k is None:
            k = category_key(v)
            if isinstance(v, (str, bytes, int)):
                uniques[v] = k
        out[i] = k
    return out


@dataclass(frozen=True)
class CandidateFeatures:
    """The candidates of one request, gathered from the encoded catalog."""

    item_ids: np.ndarray  # int64 raw ids [N]
    cat: np.ndarray  # int64 [N, C] item-entity encodings (EncodedLayout order)
    cont: np.ndarray  # float32 [N, F]
    lists: np.ndarray  # int64 [N, L]
    category_keys: np.ndarray  # int64 [N] (0 = no category)
    available: np.ndarray  # bool [N]
    snapshot_version: str


@dataclass(frozen=True)
class EncodedCatalog:
    """One item snapshot, encoded by the fitted workflow, by INDEX row (candidate rows index it
    directly). Items of the index missing from the snapshot get null features, no category and
    ``available`` False (never recommended)."""

    version: str
    item_ids: np.ndarray  # int64 [R]
    cat: np.ndarray  # int64 [R, C]
    cont: np.ndarray  # float32 [R, F]
    lists: np.ndarray  # int64 [R, L]
    category_keys: np.ndarray  # int64 [R]
    available: np.ndarray  # bool [R]
    n_missing: int
    prepare_seconds: float

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def gather(self, rows: np.ndarray) -> CandidateFeatures:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and rows.max() >= len(self.item_ids):  # retrieval has a newer index extension
            from cascade.events.extension import gather_beyond

            return gather_beyond(self, rows)
        return CandidateFeatures(self.item_ids[rows], self.cat[rows], self.cont[rows], self.lists[rows],
                                 self.category_keys[rows], self.available[rows], self.version)


def _null_fill(column: np.ndarray, missing: np.ndarray | None, is_list: bool, dtype: str) -> np.ndarray:
    """A raw input column in the form ``transform_batch`` takes, with ``missing`` rows null:
    ints/floats/bools float64 with NaN when any value is null, strings object with None (the empty
    string is null too), lists 1-D object arrays of arrays (empty = null)."""
    column = np.asarray(column)
    if is_list:
        out = np.empty(len(column), dtype=object)
        out[:] = list(column)
        if missing is not None and missing.any():
            empty = np.empty(0, dtype=np.int64 if dtype == "int64" else object)
            for i in np.flatnonzero(missing):
                out[i] = empty
        return out
    if dtype in ("int64", "float64", "bool"):
        if column.dtype.kind in "iub" and (missing is None or not missing.any()):
            return column.astype(np.int64) if dtype == "int64" and column.dtype.kind != "b" else column
        if column.dtype.kind == "O":
            null = np.fromiter((v is None or (isinstance(v, float) and v != v) for v in column.tolist()),
                               dtype=bool, count=len(column))
            values = np.full(len(column), np.nan)
            values[~null] = column[~null].astype(np.float64)
        else:
            values = column.astype(np.float64)
        if missing is not None:
            values[missing] = np.nan
        if dtype == "int64" and not np.isnan(values).any():
            return values.astype(np.int64)
        return values
    out = column.astype(object)
    if missing is not None and missing.any():
        out[missing] = None
    empty = np.fromiter((v == "" for v in out.tolist()), dtype=bool, count=len(out)) if len(out) else None
    if empty is not None and empty.any():
        out[empty] = None
    return out


def prepare_catalog(snapshot: "ItemSnapshot", workflow: "FittedWorkflow", index_item_ids: np.ndarray,
                    layout: EncodedLayout) -> EncodedCatalog:
    """Encode ``snapshot`` for the hot path: one workflow transform over the catalog (in chunks)."""
    started = time.perf_counter()
    index_item_ids = np.asarray(index_item_ids, dtype=np.int64)
    n = len(index_item_ids)
    rows = snapshot.rows_for(index_item_ids) if len(snapshot) else np.full(n, -1, dtype=np.int64)
    missing = rows < 0
    safe = np.where(missing, 0, rows)
    has_rows = len(snapshot) > 0
    all_missing = np.ones(n, dtype=bool)
    cat = np.empty((n, len(layout.categorical)), dtype=np.int64)
    cont = np.empty((n, len(layout.continuous)), dtype=np.float32)
    lists = np.empty((n, layout.list_width), dtype=np.int64)
    inputs = workflow.input_columns("item")
    for start in range(0, max(n, 1), ENCODE_CHUNK_ROWS):
        stop = min(n, start + ENCODE_CHUNK_ROWS)
        if stop <= start:
            break
        part, miss = safe[start:stop], (missing[start:stop] if has_rows else all_missing[start:stop])
        columns: dict[str, np.ndarray] = {}
        for c in inputs:
            if c.name == "item_id":
                columns[c.name] = index_item_ids[start:stop]
            elif has_rows and c.name in snapshot.columns:
                columns[c.name] = _null_fill(snapshot.columns[c.name][part], miss, c.is_list, c.dtype)
            else:  # a column the snapshot lacks (or an empty snapshot): null for every row
                columns[c.name] = _null_fill(np.full(stop - start, None, dtype=object),
                                             np.ones(stop - start, dtype=bool), c.is_list, c.dtype)
        encoded = workflow.transform_batch(columns, entity="item")
        cat[start:stop], cont[start:stop], lists[start:stop] = pack_encoded(encoded, layout, stop - start)
    if has_rows and CATEGORY_COLUMN in snapshot.columns:
        keys = category_keys(snapshot.columns[CATEGORY_COLUMN])[safe]
        keys[missing] = 0
    else:
        keys = np.zeros(n, dtype=np.int64)
    if has_rows and AVAILABLE_COLUMN in snapshot.columns:
        available = np.asarray(snapshot.columns[AVAILABLE_COLUMN])[safe].astype(bool) & ~missing
    else:
        available = ~missing if has_rows else np.zeros(n, dtype=bool)
    for array in (cat, cont, lists, keys, available):
        array.setflags(write=False)  # shared by concurrent requests: never written after prepare
    return EncodedCatalog(snapshot.version, index_item_ids, cat, cont, lists, keys, available,
                          int(missing.sum()) if has_rows else n, time.perf_counter() - started)


class CatalogRefresher:
    """Keeps the newest published item snapshot prepared: a daemon thread polls ``item_snapshot/
    LATEST`` every ``interval_s``, prepares a newer version OFF the request path and swaps it in with
    one assignment (readers take ``self.catalog`` once per request and use that object throughout).
    A version that fails to load or prepare is logged, reported to ``on_failure`` and skipped (retried
    only after ``retry_s``); the old catalog keeps serving."""

    def __init__(self, feature_repo: Path, prepare: Callable[["ItemSnapshot"], EncodedCatalog],
                 initial: EncodedCatalog, interval_s: float, retry_s: float = 60.0,
                 on_failure: Callable[[str, BaseException], None] | None = None,
                 on_swap: Callable[[EncodedCatalog], None] | None = None) -> None:
        self.feature_repo = Path(feature_repo)
        self.prepare = prepare
        self.catalog = initial
        self.interval_s = float(interval_s)
        self.retry_s = float(retry_s)
        self.on_failure = on_failure
        self.on_swap = on_swap
        self.failures = 0
        self._failed: dict[str, float] = {}  # version -> monotonic time of its last failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "CatalogRefresher":
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cascade-catalog-refresh", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def check(self) -> str | None:
        """One poll: returns the version swapped in, else None (also callable directly, e.g. tests)."""
        from cascade.features.repo import SNAPSHOT_DIR
        from cascade.features.snapshot import ItemSnapshot, latest_version

        try:
            version = latest_version(self.feature_repo)
        except OSError as exc:
            self._reject("LATEST", exc)
            return None
        if version is None or version <= self.catalog.version:
            return None
        failed_at = self._failed.get(version)
        if failed_at is not None and time.monotonic() - failed_at < self.retry_s:
            return None
        try:
            catalog = self.prepare(ItemSnapshot.load(self.feature_repo / SNAPSHOT_DIR / version))
        except Exception as exc:  # noqa: BLE001 - any failure rejects the snapshot, never the server
            self._failed[version] = time.monotonic()
            self._reject(version, exc)
            return None
        self.catalog = catalog  # the swap: one assignment
        self._failed.pop(version, None)
        LOG.info("item snapshot %s prepared in %.2f s and swapped in (%d items, %d missing)",
                 catalog.version, catalog.prepare_seconds, len(catalog), catalog.n_missing)
        if self.on_swap is not None:
            self.on_swap(catalog)
        return catalog.version

    def _reject(self, version: str, exc: BaseException) -> None:
        self.failures += 1
        LOG.error("item snapshot %s rejected, still serving %s: %s: %s",
                  version, self.catalog.version, type(exc).__name__, exc)
        if self.on_failure is not None:
            self.on_failure(version, exc)
