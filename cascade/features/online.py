"""Live per-user feature lookup through Feast's online store (the ``user_features`` Triton stage).

:class:`UserFeatureReader` keeps one warm ``feast.FeatureStore`` (registry loaded, online-store
connection open, feature references built once) and calls ``get_online_features`` per request.
Unknown users (not in the online store) come back with ``known=False`` and cold-start defaults:
attributes ``None``, empty ``recent_items``/``seen_items``, ``n_interactions`` 0. A known user
with no train history has ``known=True`` and ``n_interactions == 0``.

Array forms (same as the item snapshot): scalar attribute columns are 1-D arrays (object with
``None`` for strings and for ints/bools with nulls; NaN for float nulls); ``recent_items`` and
``seen_items`` are int64 arrays per user, and 1-D object arrays of them in a batch.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from cascade.errors import InvalidInputError, UnavailableError
from cascade.features.repo import USER_VIEW, FeatureRepo
from cascade.features.schema import DERIVED_USER_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from cascade.features.redis_config import RedisTimeouts

LOG = logging.getLogger(__name__)
_EMPTY = np.array([], dtype=np.int64)
_EMPTY.setflags(write=False)


@dataclass(frozen=True)
class UserFeatures:
    """Features of one user. ``attributes`` maps each profile column to its value (None if null)."""

    user_id: int
    known: bool
    attributes: dict[str, Any]
    recent_items: np.ndarray  # int64, most recent first, at most HISTORY_LENGTH
    seen_items: np.ndarray  # int64, every distinct train item, ascending
    n_interactions: int


@dataclass(frozen=True)
class UserFeatureBatch:
    """Columnar features of several users, in request order."""

    user_ids: np.ndarray  # int64 [B]
    known: np.ndarray  # bool [B]
    columns: dict[str, np.ndarray]  # attributes + recent_items/seen_items (object [B]) + n_interactions int64 [B]
    attribute_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def __getitem__(self, i: int) -> UserFeatures:
        return UserFeatures(
            user_id=int(self.user_ids[i]),
            known=bool(self.known[i]),
            attributes={name: _scalar(self.columns[name][i]) for name in self.attribute_names},
            recent_items=self.columns["recent_items"][i],
            seen_items=self.columns["seen_items"][i],
            n_interactions=int(self.columns["n_interactions"][i]),
        )


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _user_id(value: Any, field: str = "user_id") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{field} must be an integer raw user id, got {value!r}")
    return int(value)


def _int_array(values: Any) -> np.ndarray:
    if values is None:
        return _EMPTY
    return np.asarray(values, dtype=np.int64)


def _column(values: list, is_list: bool) -> np.ndarray:
    if is_list:
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            out[i] = np.asarray(value) if value is not None else np.array([], dtype=object)
        return out
    present = [v for v in values if v is not None]
    if len(present) == len(values) and values and isinstance(present[0], (int, float, bool)):
        return np.asarray(values)
    if present and all(isinstance(v, float) for v in present):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class UserFeatureReader:
    """Warm reader of the ``user_features`` view (one per process / Triton model instance)."""
    #: True when the store client's own timeouts bound each read (Redis with ``redis_timeouts``, no
    #: retries): cascade.features.guard then reads on the request's thread. SQLite is not: a reader
    #: can wait on a writer's lock for sqlite3's 5 s busy timeout, so it keeps the guard's worker.
    bounded_by_client_timeouts = False

    def __init__(self, repo_dir: Path, warm_up: bool = True, redis_timeouts: "RedisTimeouts | None" = None) -> None:
        """``warm_up``: one lookup at load (registry cache, store connection). An online store that
        cannot answer then is logged, not raised: the server starts and answers degraded until it
        returns (issue 18). A repo without the registered view still fails the load."""
        from cascade.features.store import open_store

        self.repo = FeatureRepo.load(repo_dir)
        self.store = open_store(self.repo.root, redis_timeouts=redis_timeouts)
        self.bounded_by_client_timeouts = self.repo.online_store == "redis" and redis_timeouts is not None
        try:
            view = self.store.get_feature_view(USER_VIEW)
        except Exception as exc:
            raise UnavailableError(
                f"feature view {USER_VIEW!r} is not registered in {self.repo.root} "
                f"(run `cascade features apply --repo {self.repo.root}`): {exc}"
            ) from exc
        from feast.types import Array

        self.feature_names: tuple[str, ...] = tuple(f.name for f in view.features)
        self.attribute_names: tuple[str, ...] = tuple(
            n for n in self.feature_names if n not in DERIVED_USER_COLUMNS
        )
        self._list_attributes = {f.name for f in view.features if isinstance(f.dtype, Array)}
        self._refs = [f"{USER_VIEW}:{name}" for name in self.feature_names]
        if warm_up:
            try:
                self.get_many([-1])  # loads the registry cache and opens the online-store connection
            except UnavailableError as exc:
                LOG.warning("online store unreachable at load, starting degraded: %s", exc)

    def _lookup(self, user_ids: list[int]) -> dict[str, list]:
        try:
            return self.store.get_online_features(
                features=self._refs, entity_rows={"user_id": user_ids}
            ).to_dict()
        except Exception as exc:  # the online store is down, the table is missing, ...
            raise UnavailableError(f"Feast online lookup of {USER_VIEW} failed: {exc}") from exc

    def get(self, user_id: int) -> UserFeatures:
        """Features of one user; ``known=False`` with cold-start defaults when not in the store."""
        uid = _user_id(user_id)
        row = self._lookup([uid])
        count = row["n_interactions"][0]
        if count is None:
            return UserFeatures(uid, False, {n: None for n in self.attribute_names}, _EMPTY, _EMPTY, 0)
        return UserFeatures(
            user_id=uid,
            known=True,
            attributes={n: row[n][0] for n in self.attribute_names},
            recent_items=_int_array(row["recent_items"][0]),
            seen_items=_int_array(row["seen_items"][0]),
            n_interactions=int(count),
        )

    def get_many(self, user_ids: Iterable[int]) -> UserFeatureBatch:
        """Features of several users in one ``get_online_features`` call, in request order."""
        ids = [_user_id(u, f"user_ids[{i}]") for i, u in enumerate(user_ids)]
        if not ids:
            columns: dict[str, np.ndarray] = {n: np.empty(0, dtype=object) for n in self.attribute_names}
            columns.update(recent_items=np.empty(0, dtype=object), seen_items=np.empty(0, dtype=object),
                           n_interactions=np.empty(0, dtype=np.int64))
            return UserFeatureBatch(np.empty(0, np.int64), np.empty(0, bool), columns, self.attribute_names)
        rows = self._lookup(ids)
        counts = rows["n_interactions"]
        known = np.array([c is not None for c in counts], dtype=bool)
        columns = {n: _column(rows[n], n in self._list_attributes) for n in self.attribute_names}
        for name in ("recent_items", "seen_items"):
            lists = np.empty(len(ids), dtype=object)
            for i, value in enumerate(rows[name]):
                lists[i] = _int_array(value)
            columns[name] = lists
        columns["n_interactions"] = np.array([c or 0 for c in counts], dtype=np.int64)
        return UserFeatureBatch(np.asarray(ids, dtype=np.int64), known, columns, self.attribute_names)
