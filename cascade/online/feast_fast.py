"""A lean per-request user lookup on Feast's online-store API (the ``user_features`` hot path).

``FeatureStore.get_online_features`` costs ~1 ms per call for ONE entity, almost all of it SDK
work around the store read: it re-parses the entity and feature-view protos from the registry on
every call (typeguard-checked), builds feature references and a response proto, then converts it
to a dict. The read itself (one indexed SQLite ``SELECT``, or one Redis ``HMGET``) is ~0.1 ms.
:class:`OnlineUserReader` resolves everything once at load and calls the configured online store's
``online_read`` (the same provider method ``get_online_features`` ends in, so SQLite and Redis both
work and the entity-key serialization is Feast's own), then converts the value protos with Feast's
``feast_value_type_to_python_type``. It answers exactly what
:meth:`cascade.features.online.UserFeatureReader.get` answers (tested for parity), and falls back to
it when the store's API is not there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cascade.errors import UnavailableError
from cascade.features.online import UserFeatureReader, UserFeatures

if TYPE_CHECKING:  # pragma: no cover
    from cascade.features.redis_config import RedisTimeouts

LOG = logging.getLogger(__name__)
_EMPTY = np.array([], dtype=np.int64)
_EMPTY.setflags(write=False)


class OnlineUserReader:
    bounded_by_client_timeouts = False  # set from the SDK reader's (cascade.features.online.UserFeatureReader)

    def __init__(self, repo_dir: Path, redis_timeouts: "RedisTimeouts | None" = None, warm_up: bool = True) -> None:
        """``redis_timeouts``: client socket/connect timeouts (serving: from the lookup budget).
        An online store that cannot answer at load is logged and the reader still builds: the
        stage starts degraded (issue 18)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        from cascade.features.repo import USER_VIEW

        self.sdk = UserFeatureReader(repo_dir, warm_up=False, redis_timeouts=redis_timeouts)
        self.bounded_by_client_timeouts = self.sdk.bounded_by_client_timeouts
        store = self.sdk.store
        self._config = store.config
        self._view = store.get_feature_view(USER_VIEW)
        self._provider = store._get_provider()
        self._names = list(self.sdk.feature_names)
        self._attributes = self.sdk.attribute_names
        self._to_python = feast_value_type_to_python_type
        self._entity_key = EntityKey
        self._value = Value
        if warm_up:  # open the connection at load, not in the first request
            try:
                self.get(-1)
            except UnavailableError as exc:
                LOG.warning("online store unreachable at load, starting degraded: %s", exc)

    def _read(self, user_ids: list[int]) -> list[dict]:
        """One online-store read for all ``user_ids`` (SQLite: one ``SELECT ... IN``; Redis: one
        pipeline) -> the feature-value protos of each user, in order ({} = not in the store)."""
        keys = [self._entity_key(join_keys=["user_id"], entity_values=[self._value(int64_val=uid)]) for uid in user_ids]
        try:
            rows = self._provider.online_read(config=self._config, table=self._view, entity_keys=keys,
                                              requested_features=self._names)
        except Exception as exc:  # the online store is down, the table is missing, ...
            raise UnavailableError(f"Feast online read of {self._view.name} failed: {exc}") from exc
        if len(rows) != len(keys):
            raise UnavailableError(f"Feast online read of {self._view.name} answered {len(rows)} rows for {len(keys)} users")
        return [(values or {}) for _, values in rows]

    def get(self, user_id: int) -> UserFeatures:
        return self.get_many([user_id])[0]

    def get_many(self, user_ids) -> list[UserFeatures]:
        """Several users in ONE store read (the batching user_features stage)."""
        uids = [int(u) for u in user_ids]
        return [self._features(uid, values) for uid, values in zip(uids, self._read(uids))]

    def _features(self, uid: int, values: dict) -> UserFeatures:
        count = values.get("n_interactions")
        count = None if count is None else self._to_python(count)
        if count is None:
            return UserFeatures(uid, False, {n: None for n in self._attributes}, _EMPTY, _EMPTY, 0)
        attributes = {}
        for name in self._attributes:
            proto = values.get(name)
            attributes[name] = None if proto is None else self._to_python(proto)
        return UserFeatures(
            user_id=uid,
            known=True,
            attributes=attributes,
            recent_items=self._ints(values.get("recent_items")),
            seen_items=self._ints(values.get("seen_items")),
            n_interactions=int(count),
        )

    def _ints(self, proto) -> np.ndarray:
        if proto is None:
            return _EMPTY
        value = self._to_python(proto)
        return _EMPTY if value is None else np.asarray(value, dtype=np.int64)
