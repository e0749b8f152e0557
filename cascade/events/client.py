"""Sending interaction events to the ``interactions`` model over gRPC (``cascade events push`` and
``cascade events ingest``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from cascade.client import TritonClient
from cascade.errors import DataValidationError, InvalidInputError, NotFoundError

MODEL = "interactions"
OUTPUTS = ("accepted", "duplicates", "n_interactions")
REQUIRED_COLUMNS = ("user_id", "item_id")
OPTIONAL_COLUMNS = ("timestamp", "weight")


@dataclass(frozen=True)
class PushResult:
    accepted: int
    duplicates: int
    n_interactions: int


class EventsClient(TritonClient):
    """``EventsClient("127.0.0.1:8001").push(42, [7, 9])`` (gRPC; ``protocol="http"`` too): the
    connection, timeouts and error mapping of :class:`cascade.client.TritonClient`."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float = 10.0,
                 protocol: Literal["grpc", "http"] = "grpc") -> None:
        super().__init__(url, protocol, timeout_s)

    def push(self, user_id: int, item_ids: Sequence[int], timestamps: Sequence[int] | None = None,
             weights: Sequence[float] | None = None) -> PushResult:
        inputs = [
            self._input("user_id", np.array([user_id], dtype=np.int64), "INT64"),
            self._input("item_ids", np.asarray(item_ids, dtype=np.int64).reshape(-1), "INT64"),
        ]
        if timestamps is not None:
            inputs.append(self._input("timestamps", np.asarray(timestamps, dtype=np.int64).reshape(-1), "INT64"))
        if weights is not None:
            inputs.append(self._input("weights", np.asarray(weights, dtype=np.float32).reshape(-1), "FP32"))
        result = self._infer(MODEL, inputs, OUTPUTS)
        return PushResult(*(int(result.as_numpy(n).reshape(-1)[0]) for n in OUTPUTS))


def read_events(path: Path):
    """An events file (CSV or Parquet) with ``user_id``, ``item_id`` and optional ``timestamp``
    (unix s) and ``weight`` columns, as a pandas DataFrame with those dtypes."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"events file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".txt"):
        frame = pd.read_csv(path)
    else:
        raise InvalidInputError(f"events file {path}: expected a .csv or .parquet file, got {suffix or 'no suffix'!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"events file {path}: missing column(s) {missing}; it has {list(frame.columns)}")
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    frame = frame[columns]
    for name in columns:
        values = frame[name]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataValidationError(f"events file {path}: row {row}: column {name!r} is empty")
        kind = "f" if name == "weight" else "i"
        if values.dtype.kind not in ("i", "u") and not (kind == "f" and values.dtype.kind == "f"):
            raise DataValidationError(f"events file {path}: column {name!r} must be {'numbers' if kind == 'f' else 'integers'}, got {values.dtype}")
    return frame


def batches(frame, batch_size: int) -> Iterator[tuple[np.ndarray, object]]:
    """(file rows, sub-frame) per request: one user's consecutive events, at most ``batch_size``."""
    if batch_size < 1:
        raise InvalidInputError(f"--batch-size must be >= 1, got {batch_size}")
    users = frame["user_id"].to_numpy()
    if not len(users):
        return
    cuts = np.flatnonzero(np.diff(users)) + 1
    for rows in np.split(np.arange(len(users)), cuts):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            yield chunk, frame.iloc[chunk]


def ingest(client: EventsClient, frame, batch_size: int = 500,
           progress: Callable[[int], None] | None = None) -> PushResult:
    """Send the events in file order, one request per user run of at most ``batch_size``. A
    rejected request stops the ingest with the file rows it covered (earlier requests stay applied;
    re-running the same file is safe: events are deduplicated by (user, item, timestamp))."""
    accepted = duplicates = 0
    last = 0
    for rows, chunk in batches(frame, batch_size):
        try:
            result = client.push(
                int(chunk["user_id"].iloc[0]), chunk["item_id"].to_numpy(np.int64),
                chunk["timestamp"].to_numpy(np.int64) if "timestamp" in chunk else None,
                chunk["weight"].to_numpy(np.float32) if "weight" in chunk else None,
            )
        except InvalidInputError as exc:
            raise type(exc)(
                f"file rows {int(rows[0])}-{int(rows[-1])} (a request's row r = file row {int(rows[0])} + r) were "
                f"rejected after {accepted} events were accepted: {exc.message}"
            ) from exc
        accepted += result.accepted
        duplicates += result.duplicates
        last = result.n_interactions
        if progress is not None:
            progress(len(rows))
    return PushResult(accepted, duplicates, last)
