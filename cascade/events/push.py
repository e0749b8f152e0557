"""Apply accepted events to the user's online features through Feast's push API.

The generated feature repo declares a ``PushSource`` (:data:`PUSH_SOURCE`) as the source of the
``user_features`` view (its batch source stays the Parquet file that ``materialize`` reads). A
push writes a whole feature row, so the user's current row is read first (through the same
online-store read the ``user_features`` stage does), merged with the events
(:func:`cascade.events.history.merge_history`) and pushed back: the very next online read sees
it. Unknown users get a row with null attributes (their first events make them warm).

Read-modify-write: one writer per user at a time. The ``interactions`` Triton model has ONE
instance per server (serialized executes); several server replicas writing the same user at the
same instant can lose one update in the online store (the interaction log keeps every event and
the next retrain/materialize rebuilds the row from it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cascade.errors import UnavailableError
from cascade.events.history import History, merge_history

LOG = logging.getLogger(__name__)
PUSH_SOURCE = "user_features_push"


class UserHistoryPusher:
    """Merges events into the user's ``recent_items``/``seen_items``/``n_interactions`` and pushes."""

    def __init__(self, repo_dir: Path) -> None:
        from cascade.online.feast_fast import OnlineUserReader

        self.reader = OnlineUserReader(repo_dir)
        self.store = self.reader.sdk.store
        self.repo = self.reader.sdk.repo
        self.attribute_names = self.reader.sdk.attribute_names
        self.history_length = int(self.repo.history_length)
        from cascade.features.repo import USER_VIEW

        stream = getattr(self.store.get_feature_view(USER_VIEW), "stream_source", None)
        if stream is None or stream.name != PUSH_SOURCE:
            raise UnavailableError(
                f"feature repo {self.repo.root}: view {USER_VIEW!r} has no push source {PUSH_SOURCE!r} (generated "
                "before events existed); regenerate it with `cascade features generate` and re-export"
            )

    def current(self, user_id: int) -> tuple[dict, History, bool]:
        features = self.reader.get(user_id)
        return (dict(features.attributes),
                History(features.recent_items, features.seen_items, features.n_interactions), features.known)

    def apply(self, user_id: int, item_ids: np.ndarray, timestamps: np.ndarray) -> History:
        """Push the user's features updated by the events; returns the new history."""
        import pandas as pd
        from feast.data_source import PushMode

        attributes, history, _ = self.current(user_id)
        updated = merge_history(history, item_ids, timestamps, self.history_length)
        # The row's event time: now, never older than the materialized rows (stores such as Redis
        # keep the newer of two writes by event time).
        moment = max(datetime.now(timezone.utc),
                     datetime.fromtimestamp(self.repo.feature_timestamp + 1, tz=timezone.utc))
        row = {"user_id": [int(user_id)]}
        row.update({name: [attributes.get(name)] for name in self.attribute_names})
        row["recent_items"] = [updated.recent_items.tolist()]
        row["seen_items"] = [updated.seen_items.tolist()]
        row["n_interactions"] = [int(updated.n_interactions)]
        row["event_timestamp"] = [pd.Timestamp(moment)]
        try:
            self.store.push(PUSH_SOURCE, pd.DataFrame(row), to=PushMode.ONLINE)
        except Exception as exc:  # the online store is down, ...
            raise UnavailableError(f"Feast push of user {user_id}'s features failed: {exc}") from exc
        return updated
