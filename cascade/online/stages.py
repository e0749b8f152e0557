"""The seven online stages as plain Python objects. Each Triton model in ``model_repository/``
wraps one of them; :mod:`cascade.online.pipeline` chains them in process (the parity reference and
the latency floor). Artifacts are located through :class:`cascade.online.export_layout.ExportLayout`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates, Selection, select
from cascade.errors import UnavailableError
from cascade.online.onnx import OnnxModel
from cascade.online.tensors import (
    EncodedLayout,
    RawColumn,
    RawLayout,
    pack_encoded,
    pack_raw,
    unpack_encoded,
    unpack_raw,
)

if TYPE_CHECKING:  # pragma: no cover
    from cascade.preprocessing import FittedWorkflow

LOG = logging.getLogger(__name__)
CATEGORY_COLUMN = "category"
AVAILABLE_COLUMN = "available"


def load_workflow(path: Path) -> "FittedWorkflow":
    from cascade.preprocessing import FittedWorkflow

    return FittedWorkflow.load(path)


def encoded_layout(workflow: "FittedWorkflow", entity: str | None) -> EncodedLayout:
    """Packing order of encoded features: the workflow's output schema order."""
    specs = workflow.output_schema(entity)
    return EncodedLayout(
        categorical=tuple(s.name for s in specs if s.kind == "categorical" and not s.list_length),
        continuous=tuple(s.name for s in specs if s.kind == "continuous" and not s.list_length),
        lists=tuple((s.name, int(s.list_length)) for s in specs if s.list_length),
    )


def raw_layout(workflow: "FittedWorkflow", entity: str) -> RawLayout:
    return RawLayout.from_columns(
        RawColumn(c.name, c.dtype, c.is_list) for c in workflow.input_columns(entity)
    )


@dataclass(frozen=True)
class EncodedUser:
    cat: np.ndarray  # int64 [1, C]
    cont: np.ndarray  # float32 [1, F]
    lists: np.ndarray  # int64 [1, L]
    seen_items: np.ndarray  # int64 raw ids
    cold_start: bool
    feature_store_error: str | None = None


class UserFeatureStage:
    """Live Feast lookup of one user + encoding with the fitted workflow (user entity)."""

    def __init__(self, feature_repo: Path, workflow: "FittedWorkflow") -> None:
        from cascade.features.online import UserFeatureReader

        self.reader = UserFeatureReader(feature_repo)
        self.workflow = workflow
        self.inputs = workflow.input_columns("user")
        self.layout = encoded_layout(workflow, "user")

    def lookup(self, user_id: int) -> EncodedUser:
        error: str | None = None
        try:
            features = self.reader.get(user_id)
            known = features.known
        except UnavailableError as exc:  # degrade to a cold-start answer rather than fail
            LOG.warning("user feature lookup failed, answering cold start: %s", exc)
            features, known, error = None, False, exc.message
        columns: dict[str, np.ndarray] = {}
        for column in self.inputs:
            columns[column.name] = self._value(column.name, column.is_list, user_id, features)
        encoded = self.workflow.transform_batch(columns, entity="user")
        cat, cont, lists = pack_encoded(encoded, self.layout, 1)
        seen = features.seen_items if (features is not None and known) else np.empty(0, dtype=np.int64)
        return EncodedUser(cat, cont, lists, seen.astype(np.int64, copy=False), not known, error)

    @staticmethod
    def _value(name: str, is_list: bool, user_id: int, features) -> np.ndarray:
        if name == "user_id":
            return np.array([user_id], dtype=np.int64)
        if features is None or not features.known:
            if is_list:
                out = np.empty(1, dtype=object)
                out[0] = np.empty(0, dtype=np.int64)
                return out
            return np.array([None], dtype=object) if name != "n_interactions" else np.array([0], np.int64)
        if name == "recent_items":
            value = features.recent_items
        elif name == "n_interactions":
            return np.array([features.n_interactions], dtype=np.int64)
        else:
            value = features.attributes.get(name)
        if is_list:
            out = np.empty(1, dtype=object)
            out[0] = np.asarray([] if value is None else value)
            return out
        return np.array([value], dtype=object if value is None or isinstance(value, str) else None)


class QueryTowerStage:
    """Two-tower user tower: encoded user features -> query embedding [1, D]."""

    def __init__(self, onnx_path: Path, workflow: "FittedWorkflow", intra_op_threads: int = 1,
                 device: str = "cpu", device_id: int = 0) -> None:
        self.model = OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id)
        self.layout = encoded_layout(workflow, "user")

    def query(self, cat: np.ndarray, cont: np.ndarray, lists: np.ndarray) -> np.ndarray:
        feeds = unpack_encoded(cat, cont, lists, self.layout)
        return self.model.run(feeds)[0].astype(np.float32, copy=False)


class RetrievalStage:
    """FAISS search over the catalog's item embeddings; popular items for cold-start users."""

    def __init__(self, index_dir: Path, n_candidates: int) -> None:
        import faiss

        self.index = faiss.read_index(str(index_dir / "items.faiss"))
        self.item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        popularity = np.load(index_dir / "popularity.npy").astype(np.float32)
        self.popular_rows = np.argsort(-popularity, kind="stable").astype(np.int64)
        self.popularity = popularity
        self.n_candidates = int(min(n_candidates, len(self.item_ids)))
        self._order = np.argsort(self.item_ids, kind="stable")
        self._sorted = self.item_ids[self._order]
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, 2 * self.n_candidates)

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return ids
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        hit = self._sorted[pos] == ids
        return self._order[pos[hit]]

    def retrieve(self, query: np.ndarray, cold_start: bool, seen: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        drop = self.rows_of(np.concatenate([np.asarray(seen, np.int64).reshape(-1), np.asarray(exclude, np.int64).reshape(-1)]))
        wanted = self.n_candidates
        if cold_start:
            rows = self.popular_rows[~np.isin(self.popular_rows, drop)][:wanted] if len(drop) else self.popular_rows[:wanted]
            return rows, np.log1p(self.popularity[rows])
        k = int(min(len(self.item_ids), wanted + len(drop)))
        scores, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), k)
        scores, rows = scores[0], rows[0].astype(np.int64)
        keep = rows >= 0
        if len(drop):
            keep &= ~np.isin(rows, drop)
        return rows[keep][:wanted], scores[keep][:wanted].astype(np.float32)


@dataclass(frozen=True)
class CandidateFeatures:
    item_ids: np.ndarray  # int64 raw ids [N]
    raw: dict[str, np.ndarray]  # packed raw tensors (item_int, item_float, item_str, item_list, item_list_widths)
    categories: np.ndarray  # object [N] (None = no category)
    available: np.ndarray  # bool [N]
    snapshot_version: str


class ItemFeatureStage:
    """Gathers candidate features by row from an in-memory snapshot of the Feast item view."""

    def __init__(self, feature_repo: Path, index_dir: Path, workflow: "FittedWorkflow", refresh_seconds: float = 30.0) -> None:
        from cascade.features.snapshot import ItemSnapshot

        self.feature_repo = feature_repo
        self.index_item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        self.layout = raw_layout(workflow, "item")
        self.refresh_seconds = refresh_seconds
        self.snapshot = ItemSnapshot.load_latest(feature_repo)
        self._last_check = time.monotonic()

    def maybe_refresh(self) -> str | None:
        """Swap in a newer published snapshot (checked at most every ``refresh_seconds``)."""
        from cascade.features.snapshot import ItemSnapshot

        now = time.monotonic()
        if now - self._last_check < self.refresh_seconds:
            return None
        self._last_check = now
        newer = ItemSnapshot.newer_available(self.feature_repo, self.snapshot.version)
        if newer is None:
            return None
        self.snapshot = ItemSnapshot.load_latest(self.feature_repo)
        return self.snapshot.version

    def gather(self, candidate_rows: np.ndarray) -> CandidateFeatures:
        snapshot = self.snapshot
        item_ids = self.index_item_ids[np.asarray(candidate_rows, dtype=np.int64).reshape(-1)]
        rows = snapshot.rows_for(item_ids)
        missing = rows < 0
        safe_rows = np.where(missing, 0, rows)
        columns = snapshot.gather(safe_rows, list(self.layout.names)) if len(snapshot) else {}
        if missing.any():  # items not in the snapshot: null features, never recommended
            columns = {name: _null_out(values, missing) for name, values in columns.items()}
            columns["item_id"] = item_ids
        raw = pack_raw(columns, self.layout, len(item_ids))
        categories = (
            snapshot.columns[CATEGORY_COLUMN][safe_rows].astype(object)
            if CATEGORY_COLUMN in snapshot.columns else np.full(len(item_ids), None, dtype=object)
        )
        available = (
            snapshot.columns[AVAILABLE_COLUMN][safe_rows].astype(bool)
            if AVAILABLE_COLUMN in snapshot.columns else np.ones(len(item_ids), dtype=bool)
        )
        available = available & ~missing
        return CandidateFeatures(item_ids, raw, categories, available, snapshot.version)


def _null_out(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Null the rows of items missing from the snapshot (numbers -> NaN, others -> None)."""
    out = values.astype(np.float64) if values.dtype.kind in "iubf" else values.astype(object)
    out[missing] = np.nan if out.dtype.kind == "f" else None
    return out


class TransformStage:
    """The fitted workflow on the candidates (item entity), joined with the encoded user."""

    def __init__(self, workflow: "FittedWorkflow") -> None:
        self.workflow = workflow
        self.raw = raw_layout(workflow, "item")
        self.user = encoded_layout(workflow, "user")
        self.ranking = encoded_layout(workflow, None)

    def transform(self, user_cat: np.ndarray, user_cont: np.ndarray, user_lists: np.ndarray,
                  raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = self.workflow.transform_batch(unpack_raw(raw, self.raw), entity="item")
        n = len(next(iter(items.values()))) if items else 0
        user = unpack_encoded(user_cat, user_cont, user_lists, self.user)
        joined = {name: np.broadcast_to(value, (n,) + value.shape[1:]) for name, value in user.items()}
        joined.update(items)
        return pack_encoded(joined, self.ranking, n)


class RankingStage:
    """DLRM scores for user x candidates (ONNX Runtime; CUDA EP on GPU instances)."""

    def __init__(self, onnx_path: Path, workflow: "FittedWorkflow", intra_op_threads: int = 1,
                 device: str = "cpu", device_id: int = 0) -> None:
        self.model = OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id)
        self.layout = encoded_layout(workflow, None)

    def score(self, cat: np.ndarray, cont: np.ndarray, lists: np.ndarray) -> np.ndarray:
        if cat.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        feeds = unpack_encoded(cat, cont, lists, self.layout)
        return self.model.run(feeds)[0].reshape(-1).astype(np.float32, copy=False)


class BusinessLogicStage:
    def __init__(self, rules: BusinessRules, export_version: str) -> None:
        self.rules = rules
        self.export_version = export_version

    def model_version(self, snapshot_version: str) -> str:
        return f"{self.export_version}+items.{snapshot_version}"

    def apply(self, candidates: Candidates, *, top_k: int, seen: np.ndarray, exclude: np.ndarray,
              explore: float, seed: int | None) -> Selection:
        return select(candidates, top_k=top_k, seen=seen, exclude=exclude, explore=explore, seed=seed, rules=self.rules)
