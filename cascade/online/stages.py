"""The seven online stages as plain Python objects. Each Triton model in ``model_repository/``
wraps one of them; :mod:`cascade.online.pipeline` chains them in process (the parity reference and
the latency floor). Artifacts are located through :class:`cascade.online.export_layout.ExportLayout`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates, Selection, select
from cascade.errors import InvalidInputError, UnavailableError
from cascade.ids import IdIndex
from cascade.online.catalog import CandidateFeatures, CatalogRefresher, EncodedCatalog, category_key, prepare_catalog
from cascade.online.onnx import OnnxModel
from cascade.online.tensors import EncodedLayout, pack_encoded, unpack_encoded

if TYPE_CHECKING:  # pragma: no cover
    from cascade.features.guard import GuardConfig
    from cascade.preprocessing import FittedWorkflow

LOG = logging.getLogger(__name__)
USER_ROW = "user_row"  # dlrm.onnx input (workflows/onnx_export.py)
CANDIDATE_SOURCE = "candidate_source"  # dlrm.onnx input: retrieval source bitmask per candidate (online/candidates.py)
CANDIDATE_SCORE = "candidate_score"  # dlrm.onnx input: item-to-item score per candidate


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


@dataclass(frozen=True)
class EncodedUser:
    cat: np.ndarray  # int64 [1, C]
    cont: np.ndarray  # float32 [1, F]
    lists: np.ndarray  # int64 [1, L]
    seen_items: np.ndarray  # int64 raw ids
    cold_start: bool
    feature_store_error: str | None = None
    recent_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # raw ids, most recent first
    degraded_reason: str | None = None  # None, "cold_start" or a cascade.features.guard reason


class UserFeatureStage:
    """Live Feast lookup of one user + encoding with the fitted workflow (user entity). The lookup
    is bounded (:class:`cascade.features.guard.FeatureGuard`: time budget + circuit breaker): a slow
    or absent store makes the request a cold start (popular items, flagged degraded), never a hang."""

    def __init__(self, feature_repo: Path, workflow: "FittedWorkflow", reader: str = "online_read",
                 guard: "GuardConfig | None" = None) -> None:
        from cascade.features.guard import FeatureGuard, GuardConfig
        from cascade.features.online import UserFeatureReader
        from cascade.features.redis_config import RedisTimeouts

        guard = guard or GuardConfig.from_env()
        timeouts = RedisTimeouts.serving(guard.budget_ms)
        if reader == "online_read":  # Feast's online-store API, no SDK per-call overhead (feast_fast.py)
            from cascade.online.feast_fast import OnlineUserReader

            self.reader = OnlineUserReader(feature_repo, redis_timeouts=timeouts)
        elif reader == "sdk":
            self.reader = UserFeatureReader(feature_repo, redis_timeouts=timeouts)
        else:
            raise InvalidInputError(f"parameter feast_reader must be 'online_read' or 'sdk', got {reader!r}")
        self.guard = FeatureGuard(self.reader, guard)
        self.workflow = workflow
        self.inputs = workflow.input_columns("user")
        self.layout = encoded_layout(workflow, "user")

    def lookup(self, user_id: int) -> EncodedUser:
        return self.lookup_many([user_id])[0]

    def lookup_many(self, user_ids: Sequence[int]) -> list[EncodedUser]:
        """Several users: ONE online-store read and ONE workflow transform for all of them (the
        batching user_features stage); each user's encodings are rows [1, ...] of the batch."""
        ids = [int(u) for u in user_ids]
        return self.encode_many(ids, *self.read_many(ids))

    def read_many(self, user_ids: Sequence[int]) -> tuple[list, str | None, str | None]:
        """The bounded Feast online-store read (phase ``feast``): per user its features or None, the
        store error and the degraded reason (cascade.features.guard) when the read was late, failed
        or refused by the open circuit (every user then answers cold start, degraded)."""
        ids = [int(u) for u in user_ids]
        result = self.guard.get_many(ids)
        if result.features is None:  # degrade to cold-start answers rather than fail or wait
            LOG.debug("user feature lookup degraded (%s), answering cold start: %s", result.reason, result.error)
            return [None] * len(ids), result.error, result.reason
        batch = result.features  # both readers: one store read for all users
        return [batch[i] for i in range(len(ids))], None, None

    def encode_many(self, user_ids: Sequence[int], features: list, error: str | None = None,
                    reason: str | None = None) -> list[EncodedUser]:
        """The fitted workflow on the users' raw features (phase ``user_encode``)."""
        ids = [int(u) for u in user_ids]
        columns = {c.name: self._column(c.name, c.is_list, ids, features) for c in self.inputs}
        encoded = self.workflow.transform_batch(columns, entity="user")
        cat, cont, lists = pack_encoded(encoded, self.layout, len(ids))
        out = []
        for b, f in enumerate(features):
            known = f is not None and f.known
            seen = f.seen_items.astype(np.int64, copy=False) if known else np.empty(0, dtype=np.int64)
            recent = np.asarray(f.recent_items, np.int64).reshape(-1) if known else np.empty(0, dtype=np.int64)
            why = reason or (None if known else "cold_start")
            out.append(EncodedUser(cat[b:b + 1], cont[b:b + 1], lists[b:b + 1], seen, not known, error,
                                   recent_items=recent, degraded_reason=why))
        return out

    @classmethod
    def _column(cls, name: str, is_list: bool, ids: list[int], features: list) -> np.ndarray:
        """One raw input column for the users, as one user's lookup would build it (so a batch
        encodes each user exactly as a lone request does)."""
        values = [cls._value(name, is_list, uid, f) for uid, f in zip(ids, features)]
        if len(values) == 1:
            return values[0]
        if is_list:
            out = np.empty(len(values), dtype=object)
            out[:] = [v[0] for v in values]
            return out
        if any(v.dtype == object for v in values):
            return np.concatenate([v.astype(object) for v in values])
        return np.concatenate(values)

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
                 device: str = "cpu", device_id: int = 0, allow_cpu_fallback: bool = False) -> None:
        self.model = OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id,
                               allow_cpu_fallback=allow_cpu_fallback)
        self.layout = encoded_layout(workflow, "user")

    def query(self, cat: np.ndarray, cont: np.ndarray, lists: np.ndarray) -> np.ndarray:
        feeds = unpack_encoded(cat, cont, lists, self.layout)
        return self.model.run(feeds)[0].astype(np.float32, copy=False)

    def query_many(self, users: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Several requests' encoded users ([1, ...] each) in ONE ONNX Runtime call -> [1, D] each."""
        cat, cont, lists = (np.concatenate([u[i] for u in users]) for i in range(3))
        out = self.query(cat, cont, lists)
        return [out[b:b + 1] for b in range(len(users))]


class RetrievalStage:
    """Candidates from several sources (:mod:`cascade.online.candidates`): the ANN search over the
    catalog's item embeddings (FAISS, or an exact searcher on the GPU path), item-to-item neighbours
    of the user's recent items (when the export has ``artifacts/candidates/``) and popular items for
    short histories; popular items only for cold-start users."""

    def __init__(self, index_dir: Path, n_candidates: int, omp_threads: int = 1, drop_seen: bool = True,
                 searcher=None, feature_repo: Path | None = None, refresh_seconds: float = 30.0,
                 candidates_dir: Path | None = None) -> None:
        """``drop_seen``: the business rules' ``drop_seen`` (business_rules.yaml); when False the
        user's seen items stay eligible here too, not only in business_logic. ``searcher``: a
        callable ``index -> ExactSearcher`` (cascade/online/exact_retrieval.py) that replaces the
        FAISS search with an exact one over the index's vectors (the GPU path). ``feature_repo``:
        items added after training (``cascade items upsert``) join the index from its index
        extension, polled every ``refresh_seconds`` (cascade/events/extension.py). ``candidates_dir``:
        the item-to-item artifact; None or a missing folder = ANN (+ popular) only."""
        import faiss

        from cascade.online.candidates import ItemNeighbours, SourceMix

        self._neighbours = None
        self._mix = SourceMix()
        if candidates_dir is not None and Path(candidates_dir).is_dir():
            self._neighbours = ItemNeighbours.load(Path(candidates_dir))
            if self._neighbours.meta.get("mix"):
                self._mix = SourceMix(**self._neighbours.meta["mix"])

        # One query per request: OpenMP threads only add fork/join and spin-wait cost, and on a
        # small CPU box they steal the cores other stages (and other instances) need.
        faiss.omp_set_num_threads(max(1, int(omp_threads)))
        self._base_index = faiss.read_index(str(index_dir / "items.faiss"))
        self._base_item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        self._base_popularity = np.load(index_dir / "popularity.npy").astype(np.float32)
        self._wanted = int(n_candidates)
        self.drop_seen = bool(drop_seen)
        self._make_searcher = searcher
        self._extensions = None
        if feature_repo is not None:
            from cascade.events.extension import ExtensionWatcher

            self._extensions = ExtensionWatcher(feature_repo, refresh_seconds)
        self._set_catalog(self._base_index, self._base_item_ids, self._base_popularity)
        if self._extensions is not None:
            self.maybe_extend()
        elif self.searcher is not None:
            self._base_index = None  # no extension to rebuild from: the vectors live only in the searcher

    def _set_catalog(self, index, item_ids: np.ndarray, popularity: np.ndarray) -> None:
        self.index = index
        self.item_ids = item_ids
        self.popular_rows = np.argsort(-popularity, kind="stable").astype(np.int64)
        self.n_candidates = int(min(self._wanted, len(self.item_ids)))
        self._rows = IdIndex(self.item_ids)
        from cascade.online.candidates import CandidateSources

        # extension rows (items added after training) have no neighbours; they come from the ANN
        self.sources = CandidateSources(max(self.n_candidates, 1), self.popular_rows, self._neighbours, self._mix)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, 2 * self.n_candidates)
        self.searcher = self._make_searcher(self.index) if self._make_searcher is not None else None
        if self.searcher is not None:
            self.index = None  # the vectors live in the searcher (on the GPU); no second copy in host memory

    def maybe_extend(self) -> str | None:
        """Add the items of a newly published index extension (rows n_base..); returns its version."""
        extension = self._extensions.poll() if self._extensions is not None else None
        if extension is None:
            return None
        from cascade.events.extension import extend_index, extended_item_ids

        popularity = np.concatenate([self._base_popularity, np.zeros(len(extension), np.float32)])
        self._set_catalog(extend_index(self._base_index, extension),
                          extended_item_ids(self._base_item_ids, extension), popularity)
        return extension.version

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Catalog rows of the known ids (unknown ids dropped)."""
        return self._rows.known_rows(item_ids)

    def retrieve(self, query: np.ndarray, cold_start: bool, seen: np.ndarray, exclude: np.ndarray,
                 recent: np.ndarray | None = None) -> np.ndarray:
        """Candidate catalog rows (the ranking stage scores them; no caller uses the ANN scores)."""
        return self.retrieve_sources(query, cold_start, seen, exclude, recent).rows

    def _drop(self, seen: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        seen = np.asarray(seen, np.int64).reshape(-1) if self.drop_seen else np.empty(0, np.int64)
        return self.rows_of(np.concatenate([seen, np.asarray(exclude, np.int64).reshape(-1)]))

    def _recent_rows(self, recent: np.ndarray | None) -> np.ndarray:
        return self._rows.rows(np.empty(0, np.int64) if recent is None else np.asarray(recent, np.int64).reshape(-1))

    def retrieve_sources(self, query: np.ndarray, cold_start: bool, seen: np.ndarray, exclude: np.ndarray,
                         recent: np.ndarray | None = None):
        """:class:`~cascade.online.candidates.MergedCandidates`: rows, source bitmask and
        item-to-item score per candidate. ``recent``: the user's recent raw item ids, most recent first."""
        self.maybe_extend()
        drop = self._drop(seen, exclude)
        recent_rows = self._recent_rows(recent)
        if cold_start or self.n_candidates == 0:
            return self.sources.merge(np.empty(0, np.int64), recent_rows, drop, cold_start=True)
        if self.searcher is not None:  # exact, filtered before its top-k
            ann = self.searcher.search_many(query, self.n_candidates, [drop])[0]
        else:
            k = self.sources.ann_wanted(len(drop))
            _, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), k)
            ann = rows[0].astype(np.int64)
        return self.sources.merge(ann, recent_rows, drop)

    def retrieve_many_sources(self, queries: Sequence[np.ndarray], cold_start: Sequence[bool],
                              seen: Sequence[np.ndarray], exclude: Sequence[np.ndarray],
                              recent: Sequence[np.ndarray | None]) -> list:
        """Several requests (:meth:`retrieve_sources` each): with an exact searcher, ONE matrix
        product + top-k for every non-cold-start query of the batch, then the per-user merge."""
        self.maybe_extend()
        if self.searcher is None:
            return [self.retrieve_sources(*args) for args in zip(queries, cold_start, seen, exclude, recent)]
        out: list = [None] * len(queries)
        warm = [i for i, cold in enumerate(cold_start) if not cold]
        for i in range(len(queries)):
            if cold_start[i]:
                out[i] = self.retrieve_sources(queries[i], True, seen[i], exclude[i], recent[i])
        if warm:
            drops = [self._drop(seen[i], exclude[i]) for i in warm]
            q = np.concatenate([np.asarray(queries[i], np.float32).reshape(1, -1) for i in warm])
            for i, drop, ann in zip(warm, drops, self.searcher.search_many(q, self.n_candidates, drops)):
                out[i] = self.sources.merge(ann, self._recent_rows(recent[i]), drop)
        return out

    def retrieve_many(self, queries: Sequence[np.ndarray], cold_start: Sequence[bool], seen: Sequence[np.ndarray],
                      exclude: Sequence[np.ndarray], recent: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """Candidate rows of several requests (:meth:`retrieve_many_sources`)."""
        recent = list(recent) if recent is not None else [None] * len(queries)
        return [m.rows for m in self.retrieve_many_sources(queries, cold_start, seen, exclude, recent)]


class TransformStage:
    """The fitted workflow on the item side, run ONCE per item snapshot over the whole catalog
    (:func:`cascade.online.catalog.prepare_catalog`), not per request: the candidate path only
    gathers encoded rows. The user side is encoded per request by :class:`UserFeatureStage`."""

    def __init__(self, workflow: "FittedWorkflow") -> None:
        self.workflow = workflow
        self.items = encoded_layout(workflow, "item")

    def encode_catalog(self, snapshot, index_item_ids: np.ndarray) -> EncodedCatalog:
        return prepare_catalog(snapshot, self.workflow, index_item_ids, self.items)


class ItemFeatureStage:
    """Candidate features: encoded rows gathered by candidate row from the current
    :class:`~cascade.online.catalog.EncodedCatalog` (one per item snapshot, prepared at load and,
    on refresh, in a background thread; swapped by one assignment).

    The initial snapshot must load (no old one to keep serving); a later one that fails is rejected,
    logged and reported to ``on_refresh_failure``. ``refresh_seconds`` <= 0: no background refresh."""

    def __init__(self, feature_repo: Path, index_dir: Path, workflow: "FittedWorkflow", refresh_seconds: float = 30.0,
                 on_refresh_failure: Callable[[str, BaseException], None] | None = None) -> None:
        from cascade.features.snapshot import ItemSnapshot

        self.feature_repo = Path(feature_repo).resolve()
        self.index_item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        self.transform = TransformStage(workflow)
        initial = self._prepare(ItemSnapshot.load_latest(self.feature_repo))
        self.refresher = CatalogRefresher(self.feature_repo, self._prepare, initial, refresh_seconds,
                                          retry_s=max(60.0, 4 * refresh_seconds), on_failure=on_refresh_failure)
        self.refresher.start()

    def _prepare(self, snapshot) -> EncodedCatalog:
        from cascade.events.extension import extended_item_ids, load_extension

        # + items added after training (index extension, published before the snapshot that has them)
        return self.transform.encode_catalog(
            snapshot, extended_item_ids(self.index_item_ids, load_extension(self.feature_repo)))

    @property
    def catalog(self) -> EncodedCatalog:
        return self.refresher.catalog

    @property
    def snapshot_version(self) -> str:
        return self.refresher.catalog.version

    def gather(self, candidate_rows: np.ndarray) -> CandidateFeatures:
        return self.refresher.catalog.gather(candidate_rows)  # one read of the catalog per request

    def close(self) -> None:
        self.refresher.stop()


class RankingStage:
    """DLRM scores for user x candidates: ONNX Runtime on the CPU, the same DLRM on PyTorch on a GPU
    (:mod:`cascade.online.torch_ranking`; ``backend`` "auto" picks by ``device``). The user's
    encodings [1, ...] go into the model as ONE user row with ``user_row`` = 0 for every candidate:
    the user side (embeddings, history pooling, user tower) runs once per request, not N times.
    A ``dlrm.onnx`` exported before the ``user_row`` input existed gets the user row broadcast."""

    def __init__(self, onnx_path: Path, workflow: "FittedWorkflow", intra_op_threads: int = 1,
                 device: str = "cpu", device_id: int = 0, backend: str = "auto", torch_options=None) -> None:
        self.model = ranking_backend(onnx_path, intra_op_threads, device, device_id, backend, torch_options)
        self.user = encoded_layout(workflow, "user")
        self.items = encoded_layout(workflow, "item")
        self.gathers_user = USER_ROW in self.model.input_names

    def score(self, user_cat: np.ndarray, user_cont: np.ndarray, user_lists: np.ndarray,
              cat: np.ndarray, cont: np.ndarray, lists: np.ndarray,
              extras: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """One user's encodings [1, ...] x N candidates' item encodings [N, ...] -> scores [N].
        ``extras``: (candidate_source int64 [N], candidate_score float32 [N]) from retrieval."""
        return self.score_many([(user_cat, user_cont, user_lists)], [(cat, cont, lists)], [extras])[0]

    def score_many(self, users: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   candidates: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   extras: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> list[np.ndarray]:
        """Several requests at once: user b's encodings [1, ...] with its candidates [N_b, ...] ->
        one scores array [N_b] per request. With ``user_row`` this is ONE ONNX Runtime call: the
        B user rows and all candidates go in together, each candidate pointing at its user's row.
        ``extras`` (per request, optional): the candidates' source bitmask and item-to-item score,
        fed to a ``dlrm.onnx`` that takes them (missing = 0: no source known, no score)."""
        counts = [int(c[0].shape[0]) for c in candidates]
        extras = list(extras) if extras is not None else [None] * len(candidates)
        if not self.gathers_user:
            return [self._score_broadcast(u, c, e) for u, c, e in zip(users, candidates, extras)]
        if sum(counts) == 0:
            return [np.empty(0, dtype=np.float32) for _ in counts]
        feeds = unpack_encoded(*(np.concatenate([c[i] for c in candidates]) for i in range(3)), self.items)
        feeds.update(unpack_encoded(*(np.concatenate([u[i][:1] for u in users]) for i in range(3)), self.user))
        feeds[USER_ROW] = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        feeds.update(self._extra_feeds(extras, counts))
        scores = self.model.run(feeds)[0].reshape(-1).astype(np.float32, copy=False)
        return np.split(scores, np.cumsum(counts)[:-1])

    @property
    def takes_candidate_features(self) -> bool:
        """Whether the DLRM takes ``candidate_source``/``candidate_score`` (trained with candidate features)."""
        return CANDIDATE_SOURCE in self.model.input_names

    def _extra_feeds(self, extras: Sequence[tuple[np.ndarray, np.ndarray] | None], counts: Sequence[int]) -> dict:
        if not self.takes_candidate_features:
            return {}
        sources, scores = [], []
        for extra, n in zip(extras, counts):
            if extra is None:
                sources.append(np.zeros(n, np.int64))
                scores.append(np.zeros(n, np.float32))
                continue
            source, score = (np.asarray(x).reshape(-1) for x in extra)
            if len(source) != n or len(score) != n:
                raise InvalidInputError(
                    f"candidate_source/candidate_score must have one entry per candidate ({n}); "
                    f"got {len(source)} and {len(score)}"
                )
            sources.append(source.astype(np.int64, copy=False))
            scores.append(score.astype(np.float32, copy=False))
        return {CANDIDATE_SOURCE: np.concatenate(sources), CANDIDATE_SCORE: np.concatenate(scores)}

    def _score_broadcast(self, user: tuple[np.ndarray, ...], candidates: tuple[np.ndarray, ...],
                         extra: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A ``dlrm.onnx`` without ``user_row``: the user row repeated for each candidate."""
        n = int(candidates[0].shape[0])
        if n == 0:
            return np.empty(0, dtype=np.float32)
        feeds = unpack_encoded(*candidates, self.items)
        feeds.update(self._extra_feeds([extra], [n]))
        for name, value in unpack_encoded(*(u[:1] for u in user), self.user).items():
            feeds[name] = np.ascontiguousarray(np.broadcast_to(value, (n,) + value.shape[1:]))
        return self.model.run(feeds)[0].reshape(-1).astype(np.float32, copy=False)


def ranking_backend(onnx_path: Path, intra_op_threads: int = 1, device: str = "cpu", device_id: int = 0,
                    backend: str = "auto", torch_options=None):
    """ONNX Runtime (``onnx``; the CPU backend) or the DLRM on PyTorch (``torch``; the GPU backend,
    weights from ``model.pt`` beside ``dlrm.onnx`` and the two-tower's in ``../retrieval``);
    ``auto``: torch on ``device`` "gpu", ONNX otherwise."""
    if backend not in ("auto", "onnx", "torch"):
        raise InvalidInputError(f"ranking backend must be auto, onnx or torch, got {backend!r}")
    if backend == "auto":
        backend = "torch" if device == "gpu" else "onnx"
    if backend == "onnx":
        return OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id)
    from cascade.online.torch_ranking import TorchRanker

    ranking_dir = Path(onnx_path).parent
    return TorchRanker.from_artifacts(ranking_dir, ranking_dir.parent / "retrieval",
                                      f"cuda:{device_id}" if device == "gpu" else "cpu", torch_options)


class BusinessLogicStage:
    """Business rules on the ranked candidates. Categories arrive as stable int64 keys
    (:func:`cascade.online.catalog.category_key`), so no string crosses stages and no dictionary is
    rebuilt per snapshot: caps compare keys and category boosts are re-keyed once at load."""

    def __init__(self, rules: BusinessRules, export_version: str) -> None:
        self.rules = rules.model_copy(update={"category_boosts": {
            str(category_key(name)): boost for name, boost in rules.category_boosts.items()}})
        self.export_version = export_version

    @staticmethod
    def categories(keys: np.ndarray) -> np.ndarray:
        """Category keys -> object [N] as the rules take them (None = no category)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        out = keys.astype(object)
        out[keys == 0] = None
        return out

    def model_version(self, snapshot_version: str) -> str:
        return f"{self.export_version}+items.{snapshot_version}"

    def apply(self, candidates: Candidates, *, top_k: int, seen: np.ndarray, exclude: np.ndarray,
              explore: float, seed: int | None) -> Selection:
        return select(candidates, top_k=top_k, seen=seen, exclude=exclude, explore=explore, seed=seed, rules=self.rules)


def candidate_extras(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(candidate_source [N], candidate_score [N]) of one ranking request ([1, N] tensors), or None
    when retrieval sent none (an ensemble from before multi-source retrieval)."""
    if CANDIDATE_SOURCE not in inputs or CANDIDATE_SCORE not in inputs:
        return None
    return inputs[CANDIDATE_SOURCE].reshape(-1), inputs[CANDIDATE_SCORE].reshape(-1)
