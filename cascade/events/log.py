"""The interaction log: accepted events as Parquet files partitioned by event hour, in a local
folder or an object store (any URL pyarrow's filesystems or fsspec understand: ``/path``,
``file:///path``, ``s3://bucket/prefix``, ``gs://...``, ``memory://...``)::

    LOG/date=YYYY-MM-DD/hour=HH/part-<ingest ns>-<random>.parquet
        user_id int64, item_id int64, timestamp int64 (unix s), weight float32, ingested_at int64 (unix ms)

Each accepted batch is one immutable file, written (and, locally, fsynced and renamed into place)
BEFORE the event is acknowledged: delivery is at least once. Deduplication by
(user_id, item_id, timestamp) happens twice: on write, against the keys this process has already
logged in that hour partition (loaded from the partition's files on first touch, so it survives
restarts); and always on read (:func:`read_log`), which covers several writer processes and a
crash between the log write and the acknowledgement.

:class:`PartitionedLog` (the file writer) and :func:`read_partitioned` also store the experiment
exposure log (cascade/experiments/exposures.py), partitioned by request hour.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.errors import InvalidInputError, UnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyarrow.fs import FileSystem

    from cascade.events.batch import EventBatch

LOG = logging.getLogger(__name__)
SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64()),
    ("weight", pa.float32()), ("ingested_at", pa.int64()),
])
KEY_COLUMNS = ["user_id", "item_id", "timestamp"]
Key = tuple[int, int, int]


def resolve(url: str | os.PathLike) -> tuple["FileSystem", str, bool]:
    """(filesystem, root path inside it, is_local) for a log URL or local path."""
    from pyarrow import fs

    text = str(url)
    if not text:
        raise InvalidInputError("interaction log URL is empty; give a folder or an object-store URL (s3://bucket/prefix)")
    if "://" not in text or text.startswith("file://"):
        path = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser().resolve()
        return fs.LocalFileSystem(), str(path), True
    try:
        filesystem, path = fs.FileSystem.from_uri(text)
        return filesystem, path.rstrip("/"), False
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        filesystem, path = fsspec.core.url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise InvalidInputError(f"interaction log URL {text!r}: no filesystem for its scheme ({exc})") from exc
    return PyFileSystem(FSSpecHandler(filesystem)), path.rstrip("/"), False


def partition_of(timestamp: int) -> str:
    """``date=YYYY-MM-DD/hour=HH`` of a unix-seconds timestamp (UTC)."""
    moment = datetime.fromtimestamp(int(timestamp), tz=timezone.utc)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


@dataclass(frozen=True)
class AppendResult:
    new: np.ndarray  # bool [n]: the event was not logged before (and is not a repeat inside the batch)
    files: tuple[str, ...]  # files written

    @property
    def n_new(self) -> int:
        return int(self.new.sum())


class PartitionedLog:
    """Append-only, hour-partitioned Parquet files at a URL: the one writer of the interaction log
    (below) and the experiment exposure log (cascade/experiments/exposures.py). Each :meth:`write`
    is one immutable file (local: written aside, fsynced, renamed; object store: one PUT)."""

    def __init__(self, url: str | os.PathLike, fsync: bool = True) -> None:
        self.url = str(url)
        self.fs, self.root, self.local = resolve(url)
        self.fsync = fsync
        if self.local:  # an object store has no folders: a marker object per partition would only cost a PUT
            self._create_dir(self.root)

    def _create_dir(self, path: str) -> None:
        try:
            self.fs.create_dir(path, recursive=True)
        except OSError as exc:
            raise UnavailableError(f"log {self.url}: cannot create {path}: {exc}") from exc

    def _files(self, folder: str) -> list[str]:
        from pyarrow import fs

        try:
            infos = self.fs.get_file_info(fs.FileSelector(folder, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise UnavailableError(f"log {self.url}: cannot list {folder}: {exc}") from exc
        return sorted(i.path for i in infos if i.type == fs.FileType.File and i.path.endswith(".parquet")
                      and not i.base_name.startswith("."))

    def _read_file(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open_input_file(path) as handle:
            return pq.read_table(handle, columns=columns)

    def write(self, partition: str, table: pa.Table) -> str:
        folder = f"{self.root}/{partition}"
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        path = f"{folder}/{name}"
        try:
            if self.local:
                self._create_dir(folder)  # write aside, fsync, rename: a reader never sees a partial file
                tmp = f"{folder}/.{name}.tmp"
                with open(tmp, "wb") as handle:
                    pq.write_table(table, handle)
                    if self.fsync:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.replace(tmp, path)
            else:  # an object-store PUT is atomic
                with self.fs.open_output_stream(path) as handle:
                    pq.write_table(table, handle)
        except OSError as exc:
            raise UnavailableError(f"log {self.url}: cannot write {path}: {exc}") from exc
        return path


class InteractionLog(PartitionedLog):
    """The interaction log: hour-partitioned by event time, deduplicated (thread-safe within a process)."""

    def __init__(self, url: str | os.PathLike, dedup_partitions: int = 48, fsync: bool = True) -> None:
        super().__init__(url, fsync)
        self._keys: OrderedDict[str, set[Key]] = OrderedDict()
        self._max_partitions = int(dedup_partitions)
        self._lock = threading.Lock()

    def _partition_keys(self, partition: str) -> set[Key]:
        keys = self._keys.get(partition)
        if keys is None:
            keys = set()
            for path in self._files(f"{self.root}/{partition}"):
                table = self._read_file(path, KEY_COLUMNS)
                keys.update(zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS)))
            self._keys[partition] = keys
            while len(self._keys) > self._max_partitions:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(partition)
        return keys

    def append(self, batch: "EventBatch") -> AppendResult:
        """Write the batch's new events (one file per hour partition touched); returns which
        events were new. Raises UnavailableError when the log cannot be written (nothing is
        then acknowledged; the caller fails the request)."""
        n = len(batch)
        partitions = [partition_of(t) for t in batch.timestamps]
        with self._lock:
            new = np.zeros(n, dtype=bool)
            pending: dict[str, list[int]] = {}
            batch_keys: set[Key] = set()
            for i in range(n):
                key = (batch.user_id, int(batch.item_ids[i]), int(batch.timestamps[i]))
                if key in batch_keys or key in self._partition_keys(partitions[i]):
                    continue
                batch_keys.add(key)
                new[i] = True
                pending.setdefault(partitions[i], []).append(i)
            files = []
            ingested = int(time.time() * 1000)
            for partition, rows in pending.items():
                index = np.asarray(rows)
                table = pa.table({
                    "user_id": pa.array(np.full(len(index), batch.user_id, np.int64)),
                    "item_id": pa.array(batch.item_ids[index]),
                    "timestamp": pa.array(batch.timestamps[index]),
                    "weight": pa.array(batch.weights[index].astype(np.float32)),
                    "ingested_at": pa.array(np.full(len(index), ingested, np.int64)),
                }, schema=SCHEMA)
                files.append(self.write(partition, table))
            return AppendResult(new, tuple(files))

    def commit(self, batch: "EventBatch", new: np.ndarray) -> None:
        """Remember the batch's new keys as logged AND applied (call after the feature push
        succeeded: a retry of a batch whose push failed is then applied again)."""
        with self._lock:
            for i in np.flatnonzero(new):
                t = int(batch.timestamps[i])
                self._partition_keys(partition_of(t)).add((batch.user_id, int(batch.item_ids[i]), t))

    def read(self, start: int | None = None, end: int | None = None) -> "pd.DataFrame":
        return read_log(self.url, start, end)


def _in_range(path: str, start: int | None, end: int | None) -> bool:
    """Partition pruning by the ``date=/hour=`` folder names (hour granularity)."""
    if start is None and end is None:
        return True
    parts = dict(p.split("=", 1) for p in path.split("/") if p.startswith(("date=", "hour=")))
    if "date" not in parts or "hour" not in parts:
        return True
    hour = int(datetime.strptime(f"{parts['date']} {parts['hour']}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc).timestamp())
    if start is not None and hour + 3600 <= start:
        return False
    return end is None or hour < end


def read_partitioned(url: str | os.PathLike, schema: pa.Schema, start: int | None = None,
                     end: int | None = None) -> pa.Table:
    """Every row of the partitioned log at ``url`` in the hour partitions that overlap
    ``[start, end)`` (unix s; None = unbounded), cast to ``schema``; rows are not filtered inside
    a partition (the caller knows its time column)."""
    log = PartitionedLog.__new__(PartitionedLog)  # read-only: no directory creation
    log.url = str(url)
    log.fs, log.root, log.local = resolve(url)
    paths = [p for p in log._files(log.root) if _in_range(p, start, end)]
    tables = [log._read_file(p).select(schema.names).cast(schema) for p in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_log(url: str | os.PathLike, start: int | None = None, end: int | None = None) -> "pd.DataFrame":
    """Every logged event with ``start <= timestamp < end`` (unix s; None = unbounded), duplicates
    by (user_id, item_id, timestamp) dropped (first ingestion kept), sorted by (user_id, timestamp,
    ingestion). Columns: user_id, item_id, timestamp, weight, ingested_at."""
    frame = read_partitioned(url, SCHEMA, start, end).to_pandas()
    if start is not None:
        frame = frame[frame["timestamp"] >= start]
    if end is not None:
        frame = frame[frame["timestamp"] < end]
    frame = frame.sort_values(["user_id", "timestamp", "ingested_at"], kind="stable")
    frame = frame.drop_duplicates(KEY_COLUMNS, keep="first").reset_index(drop=True)
    return frame
