"""Accepting one batch of interaction events (what the ``interactions`` Triton model runs):
validate the whole batch, append its new events to the interaction log, then push the user's
updated features. Nothing is acknowledged before the log write; a batch is applied whole or not
at all (validation fails before any write; a failed log write or push fails the request, and the
client's retry is deduplicated by (user, item, timestamp))."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from cascade.events.batch import DEFAULT_FUTURE_TOLERANCE_S, EventBatch, parse_batch
from cascade.events.catalog import CatalogIds
from cascade.events.log import InteractionLog
from cascade.events.push import UserHistoryPusher


@dataclass(frozen=True)
class IngestResult:
    accepted: int  # new events logged and applied
    duplicates: int  # events already logged (or repeated inside the batch): acknowledged, not re-applied
    n_interactions: int  # the user's interaction count afterwards


class InteractionService:
    def __init__(self, feature_repo: Path, log_url: str | os.PathLike,
                 future_tolerance_s: int = DEFAULT_FUTURE_TOLERANCE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = CatalogIds(feature_repo)
        self.log = InteractionLog(log_url)
        self.pusher = UserHistoryPusher(feature_repo)
        self.future_tolerance_s = int(future_tolerance_s)
        self.clock = clock

    def parse(self, inputs: Mapping[str, np.ndarray]) -> EventBatch:
        return parse_batch(inputs, self.catalog.contains, int(self.clock()), self.future_tolerance_s)

    def ingest(self, inputs: Mapping[str, np.ndarray]) -> IngestResult:
        batch = self.parse(inputs)
        appended = self.log.append(batch)
        new = appended.new
        if new.any():
            history = self.pusher.apply(batch.user_id, batch.item_ids[new], batch.timestamps[new])
            count = history.n_interactions
        else:
            count = self.pusher.current(batch.user_id)[1].n_interactions
        self.log.commit(batch, new)
        return IngestResult(appended.n_new, len(batch) - appended.n_new, int(count))
