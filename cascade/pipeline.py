"""In-process pipeline over a model-artifact folder: the same stages as the Triton ensemble
(user features -> user tower -> FAISS -> item features -> DLRM -> filter/top-k) run with ONNX
Runtime and FAISS in one process. Used by evaluation, the offline/online parity test and the
"floor" benchmark.

User features are the train-derived history (:func:`cascade.features.history.user_history`) plus
``users.parquet`` attributes — the values Feast serves. Seen items (train) and unavailable items
are filtered like the business-logic stage does; ``exclude`` adds per-user exclusions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from cascade.errors import InvalidInputError, NotFoundError

Stage = Literal["retrieval", "ranking"]


class BatchRecommender(Protocol):
    name: str

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray: ...


class OfflinePipeline:
    """Load with :meth:`load`; call :meth:`recommend_batch`."""

    def __init__(
        self, artifacts_dir: Path, data_dir: Path, *, threads: int = 1, filter_seen: bool = True,
        filter_unavailable: bool = True, user_chunk: int = 256,
    ) -> None:
        import pandas as pd

        from cascade.features.history import user_history
        from cascade.workflows.artifacts import ArtifactLayout, load_workflow
        from cascade.workflows.index import load_index
        from cascade.workflows.onnx_export import onnx_session
        from cascade.workflows.training_data import load_tables, raw_entity_columns, transform_chunked, workflow_inputs

        self.layout = ArtifactLayout(Path(artifacts_dir)).check()
        self.data_dir = Path(data_dir)
        self.filter_seen = filter_seen
        self.filter_unavailable = filter_unavailable
        self.user_chunk = user_chunk
        self.workflow = load_workflow(self.layout.workflow)
        self.index, self.item_ids, self.popularity, self.index_meta = load_index(self.layout.index)
        self.user_tower = onnx_session(self.layout.retrieval / "user_tower.onnx", threads)
        self.item_tower = onnx_session(self.layout.retrieval / "item_tower.onnx", threads)
        self.ranker = onnx_session(self.layout.ranking / "dlrm.onnx", threads)
        _, _, self.users, items, train = load_tables(self.data_dir)
        catalog_ids = items["item_id"].to_numpy(np.int64)
        if not np.array_equal(catalog_ids, self.item_ids):
            raise InvalidInputError(
                f"{self.data_dir}/items.parquet does not match index/item_ids.npy of {artifacts_dir} "
                "(different dataset or catalog order)"
            )
        self.item_features = transform_chunked(
            self.workflow, raw_entity_columns(items, workflow_inputs(self.workflow, "item")), "item"
        )
        self.available = items["available"].to_numpy(bool) if "available" in items else np.ones(len(items), bool)
        self.history = user_history(train)
        self._hist_index = pd.Index(self.history["user_id"].to_numpy(np.int64))
        self._sorted_items = np.argsort(self.item_ids, kind="stable")
        self.history_length = 50
        for spec in self.workflow.output_schema("user"):
            if spec.name == "recent_items" and spec.list_length:
                self.history_length = int(spec.list_length)

    @classmethod
    def load(cls, artifacts_dir: Path, data_dir: Path | None = None, **kwargs: Any) -> "OfflinePipeline":
        """``data_dir`` defaults to the dataset recorded in ``train.json`` by ``cascade train``."""
        artifacts_dir = Path(artifacts_dir)
        if data_dir is None:
            summary = artifacts_dir / "train.json"
            if not summary.is_file():
                raise NotFoundError(f"{summary} is missing: pass data_dir explicitly")
            data_dir = Path(json.loads(summary.read_text())["dataset"]["path"])
        return cls(artifacts_dir, Path(data_dir), **kwargs)

    # ------------------------------------------------------------------ stages
    def _rows(self, raw: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(self.item_ids[self._sorted_items], raw), 0, len(self.item_ids) - 1)
        rows = self._sorted_items[pos]
        return np.where(self.item_ids[rows] == raw, rows, -1)

    def user_features(self, user_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Encoded user-entity workflow outputs for raw ``user_ids`` (unknown users: empty history)."""
        from cascade.workflows.training_data import encode_users, serving_user_raw, user_rows_of

        recent, seen, counts = serving_user_raw(self.history, user_ids, self.history_length)
        return encode_users(self.workflow, self.users, user_rows_of(self.users, user_ids), recent, counts, seen)

    def queries(self, user_ids: np.ndarray) -> np.ndarray:
        from cascade.workflows.onnx_export import run_onnx

        return run_onnx(self.user_tower, self.user_features(user_ids))

    def _excluded_rows(self, user_ids: np.ndarray, exclude: list[np.ndarray] | None) -> list[np.ndarray]:
        present = self._hist_index.get_indexer(user_ids)
        seen_col = self.history["seen_items"].to_numpy()
        out = []
        for i, p in enumerate(present):
            parts = []
            if self.filter_seen and p >= 0:
                parts.append(np.asarray(seen_col[p], np.int64))
            if exclude is not None and len(exclude[i]):
                parts.append(np.asarray(exclude[i], np.int64))
            raw = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            rows = self._rows(raw)
            out.append(np.unique(rows[rows >= 0]))
        return out

    def candidates(self, q: np.ndarray, excluded: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(catalog rows [B, n] -1 padded, retrieval scores) after filtering."""
        blocked_unavail = np.flatnonzero(~self.available) if self.filter_unavailable else np.zeros(0, np.int64)
        depth = min(len(self.item_ids), n + max((len(e) for e in excluded), default=0) + len(blocked_unavail))
        scores, rows = self.index.search(np.ascontiguousarray(q, np.float32), depth)
        out = np.full((len(q), n), -1, np.int64)
        out_s = np.full((len(q), n), -np.inf, np.float32)
        for i in range(len(q)):
            r = rows[i]
            keep = r >= 0
            block = np.concatenate([excluded[i], blocked_unavail]) if len(blocked_unavail) else excluded[i]
            if len(block):
                keep &= ~np.isin(r, block)
            r, s = r[keep][:n], scores[i][keep][:n]
            out[i, : len(r)] = r
            out_s[i, : len(r)] = s
        return out, out_s

    def rank(self, user_features: dict[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """DLRM logits [B, n] for candidate rows (-inf where -1). One graph call for the chunk: the
        B users' features once (batch U = B) and their valid candidates (batch N) with ``user_row``
        mapping each candidate to its user, exactly as serving feeds one user and its candidates."""
        from cascade.workflows.onnx_export import USER_ROW, run_onnx

        b, n = candidates.shape
        valid = candidates >= 0
        user_row = np.repeat(np.arange(b, dtype=np.int64), n)[valid.reshape(-1)]
        rows = candidates[valid]
        feats = dict(user_features)
        feats.update({k: v[rows] for k, v in self.item_features.items()})
        feats[USER_ROW] = user_row
        # this duplicate path (issue 11 removes it) has ANN candidates only: no source, no item-to-item score
        feats.setdefault("candidate_source", np.zeros(len(rows), np.int64))
        feats.setdefault("candidate_score", np.zeros(len(rows), np.float32))
        scores = np.full((b, n), -np.inf, np.float32)
        if len(rows):
            scores[valid] = run_onnx(self.ranker, feats)
        return scores

    def recommend_batch(
        self, user_ids: np.ndarray, k: int, *, stage: Stage = "ranking", exclude: list[np.ndarray] | None = None,
        n_candidates: int = 300,
    ) -> np.ndarray:
        """[n_users, k] raw item ids (best first), -1 padded."""
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        if stage not in ("retrieval", "ranking"):
            raise InvalidInputError(f"stage must be 'retrieval' or 'ranking', got {stage!r}")
        if exclude is not None and len(exclude) != len(user_ids):
            raise InvalidInputError(f"exclude must have one array per user ({len(user_ids)}), got {len(exclude)}")
        n = max(k, n_candidates)
        out = np.full((len(user_ids), k), -1, np.int64)
        for lo in range(0, len(user_ids), self.user_chunk):
            ids = user_ids[lo:lo + self.user_chunk]
            feats = self.user_features(ids)
            from cascade.workflows.onnx_export import run_onnx

            q = run_onnx(self.user_tower, feats)
            excluded = self._excluded_rows(ids, None if exclude is None else exclude[lo:lo + self.user_chunk])
            cand, scores = self.candidates(q, excluded, n)
            if stage == "ranking":
                scores = self.rank(feats, cand)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(cand, order, axis=1)
            out[lo:lo + len(ids), : top.shape[1]] = np.where(top >= 0, self.item_ids[np.maximum(top, 0)], -1)
        return out


class PipelineRecommender:
    """:class:`BatchRecommender` adapter over one stage of an :class:`OfflinePipeline`."""

    def __init__(self, pipeline: OfflinePipeline, stage: Stage, n_candidates: int = 300, name: str | None = None) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.n_candidates = n_candidates
        self.name = name or ("two_tower" if stage == "retrieval" else "two_tower+dlrm")

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        return self.pipeline.recommend_batch(user_ids, k, stage=self.stage, exclude=exclude, n_candidates=self.n_candidates)


def recommenders(pipeline: OfflinePipeline, n_candidates: int = 300) -> list[PipelineRecommender]:
    """Retrieval alone and the full retrieval + ranking pipeline."""
    return [PipelineRecommender(pipeline, "retrieval", n_candidates), PipelineRecommender(pipeline, "ranking", n_candidates)]
