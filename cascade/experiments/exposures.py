"""The exposure log: what the experiment router answered, one row per answered request.

Stored like the interaction log (the same writer, :class:`cascade.events.log.PartitionedLog`),
partitioned by request hour, at the router parameter ``exposure_log`` (a folder or an object-store
URL such as ``s3://bucket/exposures``)::

    EXPOSURES/date=YYYY-MM-DD/hour=HH/part-<ns>-<random>.parquet
        request_ms int64 (server clock when the router received the request, unix ms), user_id int64,
        experiment string, variant string, bundle string,
        forced bool (the variant came from the request's ``variant`` input: QA traffic, not randomised),
        item_ids list<int64> (the items answered, in order)

Off the request path: :meth:`ExposureWriter.submit` only puts the row on a bounded queue (never
blocks, never raises); one daemon thread writes a file per partition every ``flush_seconds`` (and
at close). A full queue or a failed write drops rows, counted through ``on_dropped(reason, n)``;
a request is never delayed or failed by the log.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

LOG = logging.getLogger(__name__)
DEFAULT_MAX_PENDING = 20_000  # rows queued before new ones are dropped (a slow or broken store)
DEFAULT_FLUSH_SECONDS = 5.0
DROP_QUEUE_FULL = "queue_full"
DROP_WRITE_FAILED = "write_failed"
DROP_UNAVAILABLE = "unavailable"  # the log could not be opened at start


def exposure_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([
        ("request_ms", pa.int64()), ("user_id", pa.int64()), ("experiment", pa.string()),
        ("variant", pa.string()), ("bundle", pa.string()), ("forced", pa.bool_()),
        ("item_ids", pa.list_(pa.int64())),
    ])


@dataclass(frozen=True)
class Exposure:
    request_ms: int
    user_id: int
    experiment: str
    variant: str
    bundle: str
    forced: bool
    item_ids: np.ndarray  # int64 [k]


class ExposureWriter:
    """A bounded queue and one background thread appending exposures to the log at ``url``."""

    def __init__(self, url: str | os.PathLike, *, max_pending: int = DEFAULT_MAX_PENDING,
                 flush_seconds: float = DEFAULT_FLUSH_SECONDS,
                 on_written: Callable[[int], None] | None = None,
                 on_dropped: Callable[[str, int], None] | None = None,
                 log_warning: Callable[[str], None] | None = None) -> None:
        from cascade.events.log import PartitionedLog

        if max_pending < 1 or not flush_seconds > 0:
            raise ValueError(f"max_pending must be >= 1 and flush_seconds > 0, got {max_pending}, {flush_seconds}")
        self.log = PartitionedLog(url, fsync=False)  # raises UnavailableError when a local folder cannot be made
        self.flush_seconds = float(flush_seconds)
        self._queue: queue.Queue[Exposure] = queue.Queue(maxsize=int(max_pending))
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self._warn = log_warning or LOG.warning
        self._last_warning = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cascade-exposures", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.log.url

    def submit(self, exposure: Exposure) -> bool:
        """Queue one exposure; False (and counted) when the queue is full. Never blocks or raises."""
        try:
            self._queue.put_nowait(exposure)
            return True
        except queue.Full:
            self._dropped(DROP_QUEUE_FULL, 1)
            return False

    def _dropped(self, reason: str, n: int) -> None:
        try:
            self._on_dropped(reason, n)
        except Exception:  # noqa: BLE001 - counting must not break the caller
            pass

    def _drain(self) -> list[Exposure]:
        rows: list[Exposure] = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                return rows

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> int:
        """Write what is queued now (one file per hour partition); returns the rows written."""
        rows = self._drain()
        if not rows:
            return 0
        from cascade.events.log import partition_of

        written = 0
        by_partition: dict[str, list[Exposure]] = {}
        for row in rows:
            by_partition.setdefault(partition_of(row.request_ms // 1000), []).append(row)
        for partition, part in by_partition.items():
            try:
                self.log.write(partition, to_table(part))
                written += len(part)
            except Exception as error:  # noqa: BLE001 - a broken store drops rows, never a request
                self._dropped(DROP_WRITE_FAILED, len(part))
                now = time.monotonic()
                if now - self._last_warning > 60.0:  # one line a minute, not one per flush
                    self._last_warning = now
                    self._warn(f"exposure log {self.url}: {len(part)} exposures dropped: {error}")
        if written:
            try:
                self._on_written(written)
            except Exception:  # noqa: BLE001
                pass
        return written

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.flush()


def to_table(rows: list[Exposure]) -> "pa.Table":
    import pyarrow as pa

    return pa.table({
        "request_ms": pa.array([r.request_ms for r in rows], pa.int64()),
        "user_id": pa.array([r.user_id for r in rows], pa.int64()),
        "experiment": pa.array([r.experiment for r in rows], pa.string()),
        "variant": pa.array([r.variant for r in rows], pa.string()),
        "bundle": pa.array([r.bundle for r in rows], pa.string()),
        "forced": pa.array([r.forced for r in rows], pa.bool_()),
        "item_ids": pa.array([np.asarray(r.item_ids, np.int64) for r in rows], pa.list_(pa.int64())),
    }, schema=exposure_schema())


def read_exposures(url: str | os.PathLike, start: int | None = None, end: int | None = None,
                   experiment: str | None = None) -> "pd.DataFrame":
    """Exposures with ``start <= request time < end`` (unix s), of ``experiment`` when given,
    sorted by request time. Columns as in the module docstring."""
    from cascade.events.log import read_partitioned

    frame = read_partitioned(url, exposure_schema(), start, end).to_pandas()
    seconds = frame["request_ms"] // 1000
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (seconds >= start).to_numpy()
    if end is not None:
        keep &= (seconds < end).to_numpy()
    if experiment is not None:
        keep &= (frame["experiment"] == experiment).to_numpy()
    return frame[keep].sort_values("request_ms", kind="stable").reset_index(drop=True)


def users_per_variant(frame: "pd.DataFrame") -> dict[str, int]:
    """Distinct hash-assigned users per variant in exposure rows (forced-variant rows left out):
    the counts the SRM check tests (the user is the randomisation unit)."""
    from cascade.experiments.assign import VARIANTS

    hashed = frame[~frame["forced"]]
    counts = hashed.groupby("variant")["user_id"].nunique()
    return {v: int(counts.get(v, 0)) for v in VARIANTS}
