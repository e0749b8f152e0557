"""The seven online stages as plain Python objects. Each Triton model in ``model_repository/``
wraps one of them; :mod:`cascade.online.pipeline` chains them in process (the parity reference and
the latency floor). Artifacts are located through :class:`cascade.online.export_layout.ExportLayout`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cascade.business.config import BusinessRules
from cascade.business.rules import Candidates, Selection, select
from cascade.errors import InvalidInputError, UnavailableError
from cascade.online.onnx import OnnxModel
from cascade.online.tensors import (
    CatalogTensors,
    EncodedLayout,
    RawColumn,
    RawLayout,
    build_dictionaries,
    decode_strings,
    dictionary_columns,
    encode_strings,
    pack_encoded,
    unpack_encoded,
    unpack_raw,
)

if TYPE_CHECKING:  # pragma: no cover
    from cascade.features.guard import GuardConfig
    from cascade.preprocessing import FittedWorkflow

LOG = logging.getLogger(__name__)
CATEGORY_COLUMN = "category"
USER_ROW = "user_row"  # dlrm.onnx input (workflows/onnx_export.py)
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


_DICTIONARY_CACHE: dict[tuple[str, str, tuple[str, ...]], dict[str, np.ndarray]] = {}
_DICTIONARY_CACHE_SIZE = 4


def snapshot_dictionaries(feature_repo: Path, version: str, names: tuple[str, ...],
                          snapshot=None) -> dict[str, np.ndarray]:
    """String dictionaries of item snapshot ``version`` (see :func:`cascade.online.tensors.string_dictionary`):
    built from ``snapshot`` when it is that version, else from the published snapshot's Parquet
    (only the ``names`` columns). Cached per process, so the in-process pipeline builds them once."""
    if not version:  # "" = the latest published snapshot: only the load-time warm-up sends it (online/warmup.py)
        from cascade.features.snapshot import latest_version

        version = latest_version(feature_repo) or ""
        if not version:
            raise UnavailableError(f"no item snapshot published in {feature_repo}")
    key = (str(feature_repo), version, tuple(names))  # callers pass a resolved path (no syscall per request)
    hit = _DICTIONARY_CACHE.get(key)
    if hit is not None:
        return hit
    if snapshot is not None and snapshot.version == version:
        columns, lists = snapshot.columns, snapshot.list_columns
    else:
        import json

        import pyarrow.parquet as pq

        from cascade.features.repo import SNAPSHOT_DIR
        from cascade.features.schema import numpy_column
        from cascade.features.snapshot import ITEMS_FILE, META_FILE

        folder = Path(feature_repo) / SNAPSHOT_DIR / version
        if not (folder / ITEMS_FILE).is_file():
            raise UnavailableError(f"item snapshot {version} is not in {folder.parent} (pruned or not published)")
        lists = tuple(json.loads((folder / META_FILE).read_text()).get("list_columns", []))
        present = [n for n in names if n in pq.read_schema(folder / ITEMS_FILE).names]
        table = pq.read_table(folder / ITEMS_FILE, columns=present)
        columns = {n: numpy_column(table.column(n), n in lists) for n in present}
    out = build_dictionaries(columns, names, lists)
    while len(_DICTIONARY_CACHE) >= _DICTIONARY_CACHE_SIZE:
        _DICTIONARY_CACHE.pop(next(iter(_DICTIONARY_CACHE)))
    _DICTIONARY_CACHE[key] = out
    return out


@dataclass(frozen=True)
class EncodedUser:
    cat: np.ndarray  # int64 [1, C]
    cont: np.ndarray  # float32 [1, F]
    lists: np.ndarray  # int64 [1, L]
    seen_items: np.ndarray  # int64 raw ids
    cold_start: bool
    feature_store_error: str | None = None
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

        guard = guard or GuardConfig()
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
        result = self.guard.get_many(ids)
        if result.features is None:  # degrade to cold-start answers rather than fail or wait
            LOG.debug("user feature lookup degraded (%s), answering cold start: %s", result.reason, result.error)
            features: list = [None] * len(ids)
        else:
            batch = result.features
            features = [batch[i] for i in range(len(ids))]
        columns = {c.name: self._column(c.name, c.is_list, ids, features) for c in self.inputs}
        encoded = self.workflow.transform_batch(columns, entity="user")
        cat, cont, lists = pack_encoded(encoded, self.layout, len(ids))
        out = []
        for b, f in enumerate(features):
            known = f is not None and f.known
            seen = f.seen_items.astype(np.int64, copy=False) if known else np.empty(0, dtype=np.int64)
            reason = result.reason or (None if known else "cold_start")
            out.append(EncodedUser(cat[b:b + 1], cont[b:b + 1], lists[b:b + 1], seen, not known, result.error, reason))
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
                 device: str = "cpu", device_id: int = 0) -> None:
        self.model = OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id)
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
    """FAISS search over the catalog's item embeddings; popular items for cold-start users."""

    def __init__(self, index_dir: Path, n_candidates: int, omp_threads: int = 1, drop_seen: bool = True) -> None:
        """``drop_seen``: the business rules' ``drop_seen`` (business_rules.yaml); when False the
        user's seen items stay eligible here too, not only in business_logic."""
        import faiss

        # One query per request: OpenMP threads only add fork/join and spin-wait cost, and on a
        # small CPU box they steal the cores other stages (and other instances) need.
        faiss.omp_set_num_threads(max(1, int(omp_threads)))
        self.index = faiss.read_index(str(index_dir / "items.faiss"))
        self.item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        popularity = np.load(index_dir / "popularity.npy").astype(np.float32)
        self.popular_rows = np.argsort(-popularity, kind="stable").astype(np.int64)
        self.n_candidates = int(min(n_candidates, len(self.item_ids)))
        self.drop_seen = bool(drop_seen)
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

    def retrieve(self, query: np.ndarray, cold_start: bool, seen: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """Candidate catalog rows, best first (the ranking stage scores them; no caller uses the ANN scores)."""
        seen = np.asarray(seen, np.int64).reshape(-1) if self.drop_seen else np.empty(0, np.int64)
        drop = self.rows_of(np.concatenate([seen, np.asarray(exclude, np.int64).reshape(-1)]))
        wanted = self.n_candidates
        if cold_start:
            rows = self.popular_rows[~np.isin(self.popular_rows, drop)][:wanted] if len(drop) else self.popular_rows[:wanted]
            return rows
        k = int(min(len(self.item_ids), wanted + len(drop)))
        _, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), k)
        rows = rows[0].astype(np.int64)
        keep = rows >= 0
        if len(drop):
            keep &= ~np.isin(rows, drop)
        return rows[keep][:wanted]


@dataclass(frozen=True)
class CandidateFeatures:
    item_ids: np.ndarray  # int64 raw ids [N]
    raw: dict[str, np.ndarray]  # packed raw tensors (item_int, item_float, item_str, item_list, item_list_widths)
    category_codes: np.ndarray  # int64 [N] codes into the snapshot's category dictionary (0 = none)
    available: np.ndarray  # bool [N]
    snapshot_version: str
    category_dictionary: np.ndarray  # object [V]

    @property
    def categories(self) -> np.ndarray:
        """object [N]: category str, None = no category."""
        return decode_strings(self.category_codes, self.category_dictionary)


@dataclass(frozen=True)
class _Catalog:
    """One snapshot prepared for the hot path (swapped as a whole on refresh)."""

    snapshot: object  # ItemSnapshot
    tensors: CatalogTensors
    category_codes: np.ndarray  # int64 [n_items]
    category_dictionary: np.ndarray
    available: np.ndarray  # bool [n_items]
    rows_of_index: np.ndarray  # int64 [n_index]: snapshot row of each index row (-1 = not in the snapshot)


class ItemFeatureStage:
    """Gathers candidate features by row from an in-memory snapshot of the Feast item view.

    At snapshot load the whole catalog is packed once into the raw tensors (strings dictionary-
    encoded to INT64 codes), so a request is a row gather: no per-candidate Python and no BYTES."""

    def __init__(self, feature_repo: Path, index_dir: Path, workflow: "FittedWorkflow", refresh_seconds: float = 30.0) -> None:
        from cascade.features.snapshot import ItemSnapshot

        self.feature_repo = Path(feature_repo).resolve()
        self.index_item_ids = np.load(index_dir / "item_ids.npy").astype(np.int64)
        self.layout = raw_layout(workflow, "item")
        self.dictionary_names = item_dictionary_names(self.layout)
        self.refresh_seconds = refresh_seconds
        self.catalog = self._prepare(ItemSnapshot.load_latest(feature_repo))
        self._last_check = time.monotonic()
        self.rejected_version: str | None = None  # the last published version that failed validation
        self.refresh_failures = 0

    @property
    def snapshot(self):
        return self.catalog.snapshot

    def _prepare(self, snapshot) -> _Catalog:
        dictionaries = snapshot_dictionaries(self.feature_repo, snapshot.version, self.dictionary_names, snapshot)
        n = len(snapshot)
        tensors = CatalogTensors.build(snapshot.version, snapshot.columns, self.layout, n, dictionaries)
        category_dictionary = dictionaries.get(CATEGORY_COLUMN, np.empty(0, dtype=object))
        category_codes = (
            encode_strings(snapshot.columns[CATEGORY_COLUMN], category_dictionary)
            if CATEGORY_COLUMN in snapshot.columns else np.zeros(n, dtype=np.int64)
        )
        available = (
            np.asarray(snapshot.columns[AVAILABLE_COLUMN]).astype(bool)
            if AVAILABLE_COLUMN in snapshot.columns else np.ones(n, dtype=bool)
        )
        rows_of_index = snapshot.rows_for(self.index_item_ids)  # once per snapshot, not per request
        return _Catalog(snapshot, tensors, category_codes, category_dictionary, available, rows_of_index)

    def maybe_refresh(self) -> str | None:
        """Swap in a newer published snapshot (checked at most every ``refresh_seconds``)."""
        from cascade.features.snapshot import ItemSnapshot

        now = time.monotonic()
        if now - self._last_check < self.refresh_seconds:
            return None
        self._last_check = now
        newer = ItemSnapshot.newer_available(self.feature_repo, self.snapshot.version)
        if newer is None or newer == self.rejected_version:
            return None
        try:  # a corrupt or half-written snapshot is rejected; the current one keeps serving
            self.catalog = self._prepare(ItemSnapshot.load_latest(self.feature_repo))
        except Exception as exc:  # noqa: BLE001 - any loader failure is a rejection, never a failed request
            self.rejected_version, self.refresh_failures = newer, self.refresh_failures + 1
            LOG.error("item snapshot %s rejected, still serving %s: %s", newer, self.snapshot.version, exc)
            return None
        return self.catalog.snapshot.version

    def gather(self, candidate_rows: np.ndarray) -> CandidateFeatures:
        catalog = self.catalog
        snapshot = catalog.snapshot
        candidate_rows = np.asarray(candidate_rows, dtype=np.int64).reshape(-1)
        item_ids = self.index_item_ids[candidate_rows]
        rows = catalog.rows_of_index[candidate_rows]
        missing = rows < 0
        any_missing = bool(missing.any())
        safe_rows = np.where(missing, 0, rows) if any_missing else rows
        if len(snapshot):
            raw = catalog.tensors.gather(safe_rows, missing if any_missing else None, item_ids, self.layout)
        else:  # empty snapshot: every candidate is missing
            raw = _all_missing(item_ids, self.layout)
        codes = catalog.category_codes[safe_rows] if len(snapshot) else np.zeros(len(item_ids), np.int64)
        available = catalog.available[safe_rows] if len(snapshot) else np.zeros(len(item_ids), bool)
        if any_missing:  # items not in the snapshot: null features, never recommended
            codes = np.where(missing, 0, codes)
            available = available & ~missing
        return CandidateFeatures(item_ids, raw, codes, available, snapshot.version, catalog.category_dictionary)


def _warm_dictionaries(feature_repo: Path, names: tuple[str, ...]) -> None:
    """Build the latest snapshot's dictionaries at load, not in the first request."""
    from cascade.features.snapshot import latest_version

    version = latest_version(feature_repo)
    if version is not None:
        try:
            snapshot_dictionaries(feature_repo, version, names)
        except UnavailableError as exc:  # pragma: no cover - racing a publish; built on first use
            LOG.warning("dictionary warm-up skipped: %s", exc)


def item_dictionary_names(layout: RawLayout) -> tuple[str, ...]:
    names = dictionary_columns(layout)
    return names if CATEGORY_COLUMN in names else names + (CATEGORY_COLUMN,)


def _all_missing(item_ids: np.ndarray, layout: RawLayout) -> dict[str, np.ndarray]:
    from cascade.online.tensors import INT_NULL

    n = len(item_ids)
    ints = np.full((n, len(layout.ints)), INT_NULL, dtype=np.int64)
    if "item_id" in layout.ints:
        ints[:, layout.ints.index("item_id")] = item_ids
    return {
        "item_int": ints,
        "item_float": np.full((n, len(layout.floats)), np.nan),
        "item_str": np.zeros((n, len(layout.strings)), np.int64),
        "item_list": np.zeros((n, 0), np.int64),
        "item_list_widths": np.zeros(len(layout.lists), np.int64),
    }


class TransformStage:
    """The fitted workflow on the candidates (item entity). String codes are decoded with the
    dictionaries of the request's item-snapshot version. Only the candidates' item-entity encodings
    leave this stage: the user's encodings (one row) go to ``ranking`` straight from
    ``user_features`` and are broadcast there, in process, instead of crossing two more stage
    boundaries as N identical rows (the [N, 50] history list alone was ~120 KB per request)."""

    def __init__(self, workflow: "FittedWorkflow", feature_repo: Path) -> None:
        self.workflow = workflow
        self.feature_repo = Path(feature_repo).resolve()
        self.raw = raw_layout(workflow, "item")
        self.dictionary_names = item_dictionary_names(self.raw)
        _warm_dictionaries(feature_repo, self.dictionary_names)
        self.items = encoded_layout(workflow, "item")

    def transform(self, raw: dict[str, np.ndarray], snapshot_version: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dictionaries = snapshot_dictionaries(self.feature_repo, snapshot_version, self.dictionary_names)
        items = self.workflow.transform_batch(unpack_raw(raw, self.raw, dictionaries), entity="item")
        n = len(next(iter(items.values()))) if items else int(np.asarray(raw["item_int"]).shape[0])
        return pack_encoded(items, self.items, n)


class RankingStage:
    """DLRM scores for user x candidates (ONNX Runtime; CUDA EP on GPU instances). The user's
    encodings [1, ...] go into the graph as ONE user row with ``user_row`` = 0 for every candidate:
    the user side (embeddings, history pooling, user tower) runs once per request, not N times.
    A ``dlrm.onnx`` exported before the ``user_row`` input existed gets the user row broadcast."""

    def __init__(self, onnx_path: Path, workflow: "FittedWorkflow", intra_op_threads: int = 1,
                 device: str = "cpu", device_id: int = 0) -> None:
        self.model = OnnxModel(onnx_path, intra_op_threads=intra_op_threads, device=device, device_id=device_id)
        self.user = encoded_layout(workflow, "user")
        self.items = encoded_layout(workflow, "item")
        self.gathers_user = USER_ROW in self.model.input_names

    def score(self, user_cat: np.ndarray, user_cont: np.ndarray, user_lists: np.ndarray,
              cat: np.ndarray, cont: np.ndarray, lists: np.ndarray) -> np.ndarray:
        """One user's encodings [1, ...] x N candidates' item encodings [N, ...] -> scores [N]."""
        return self.score_many([(user_cat, user_cont, user_lists)], [(cat, cont, lists)])[0]

    def score_many(self, users: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   candidates: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Several requests at once: user b's encodings [1, ...] with its candidates [N_b, ...] ->
        one scores array [N_b] per request. With ``user_row`` this is ONE ONNX Runtime call: the
        B user rows and all candidates go in together, each candidate pointing at its user's row."""
        counts = [int(c[0].shape[0]) for c in candidates]
        if not self.gathers_user:
            return [self._score_broadcast(u, c) for u, c in zip(users, candidates)]
        if sum(counts) == 0:
            return [np.empty(0, dtype=np.float32) for _ in counts]
        feeds = unpack_encoded(*(np.concatenate([c[i] for c in candidates]) for i in range(3)), self.items)
        feeds.update(unpack_encoded(*(np.concatenate([u[i][:1] for u in users]) for i in range(3)), self.user))
        feeds[USER_ROW] = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        scores = self.model.run(feeds)[0].reshape(-1).astype(np.float32, copy=False)
        return np.split(scores, np.cumsum(counts)[:-1])

    def _score_broadcast(self, user: tuple[np.ndarray, ...], candidates: tuple[np.ndarray, ...]) -> np.ndarray:
        """A ``dlrm.onnx`` without ``user_row``: the user row repeated for each candidate."""
        n = int(candidates[0].shape[0])
        if n == 0:
            return np.empty(0, dtype=np.float32)
        feeds = unpack_encoded(*candidates, self.items)
        for name, value in unpack_encoded(*(u[:1] for u in user), self.user).items():
            feeds[name] = np.ascontiguousarray(np.broadcast_to(value, (n,) + value.shape[1:]))
        return self.model.run(feeds)[0].reshape(-1).astype(np.float32, copy=False)


class BusinessLogicStage:
    def __init__(self, rules: BusinessRules, export_version: str, feature_repo: Path | None = None,
                 workflow: "FittedWorkflow | None" = None) -> None:
        self.rules = rules
        self.export_version = export_version
        self.feature_repo = Path(feature_repo).resolve() if feature_repo is not None else None
        self.dictionary_names = item_dictionary_names(raw_layout(workflow, "item")) if workflow is not None else (CATEGORY_COLUMN,)
        if feature_repo is not None:
            _warm_dictionaries(feature_repo, self.dictionary_names)

    def categories(self, codes: np.ndarray, snapshot_version: str) -> np.ndarray:
        """Category codes (item_features) -> object [N] of str / None, via the snapshot's dictionary."""
        if self.feature_repo is None:
            raise UnavailableError("business_logic: no feature_repo configured to decode category codes")
        dictionaries = snapshot_dictionaries(self.feature_repo, snapshot_version, self.dictionary_names)
        return decode_strings(codes, dictionaries.get(CATEGORY_COLUMN, np.empty(0, dtype=object)))

    def model_version(self, snapshot_version: str) -> str:
        return f"{self.export_version}+items.{snapshot_version}"

    def apply(self, candidates: Candidates, *, top_k: int, seen: np.ndarray, exclude: np.ndarray,
              explore: float, seed: int | None) -> Selection:
        return select(candidates, top_k=top_k, seen=seen, exclude=exclude, explore=explore, seed=seed, rules=self.rules)
