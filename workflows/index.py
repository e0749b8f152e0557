"""Item-embedding ANN index: exact inner product (IndexFlatIP) up to ``exact_threshold`` items, an
inverted-file index (IVF-Flat) above it, or HNSW on request, with recall@k of the approximate index
against exact search measured on held-out queries and written to ``index/meta.json``. Row i of the
index is catalog row i.

Why IVF by default for large catalogs (measured on the 1M-item generated catalog, 64-d two-tower
embeddings, `benchmarks/bench_index_quality.py` and NOTES): most of the 1M items have one or two
interactions, so their embeddings come from shared features and sit in tight near-duplicate
clusters, where the HNSW graph navigates badly: retrieval recall@100 0.164 (efSearch 512) and
0.176 (efSearch 8192, 22 ms/query) against 0.191 exact, with a 263 s build. IVF-Flat with 4096
lists built in 19 s and reached 0.186 at nprobe 64 (0.28 ms/query) and 0.190 at nprobe 256
(0.96 ms/query). ``nprobe`` is chosen at build time: the smallest probe count whose recall@k against
exact search on the queries reaches ``target_recall``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cascade.errors import InvalidInputError, NotFoundError

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]


@dataclass
class IndexConfig:
    kind: IndexKind = "auto"
    exact_threshold: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 512
    recall_k: int = 100
    recall_queries: int = 1000
    seed: int = 0
    deterministic: bool = True  # single-threaded HNSW construction (FAISS' level RNG is fixed)
    large_kind: Literal["ivf", "hnsw"] = "ivf"  # what "auto" builds above exact_threshold
    ivf_lists: int | None = None  # default: 4 * sqrt(n), rounded to a power of two
    ivf_train_size: int = 200_000
    nprobe_candidates: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    target_recall: float = 0.98  # recall@k vs exact that nprobe is tuned to reach


def _check(embeddings: np.ndarray) -> np.ndarray:
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise InvalidInputError(f"item embeddings must be a non-empty 2-D array, got shape {embeddings.shape}")
    out = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidInputError("item embeddings contain NaN or inf")
    return out


def build_index(embeddings: np.ndarray, config: IndexConfig | None = None) -> "object":
    """Build a FAISS inner-product index over ``embeddings`` [N, D]."""
    import faiss

    config = config or IndexConfig()
    x = _check(embeddings)
    n, d = x.shape
    kind = config.kind
    if kind == "auto":
        kind = "flat" if n <= config.exact_threshold else config.large_kind
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index
    if kind == "ivf":
        return _build_ivf(x, config)
    if kind != "hnsw":
        raise InvalidInputError(f"index kind must be auto, flat, ivf or hnsw; got {config.kind!r}")
    index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    threads = faiss.omp_get_max_threads()
    if config.deterministic:
        faiss.omp_set_num_threads(1)
    try:
        index.add(x)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def _build_ivf(x: np.ndarray, config: IndexConfig) -> "object":
    import faiss

    n, d = x.shape
    lists = config.ivf_lists or int(2 ** round(np.log2(max(16.0, 4 * np.sqrt(n)))))
    lists = max(1, min(lists, n // 39 or 1))  # FAISS wants >= 39 training points per list
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(config.seed)
    sample = x[rng.choice(n, size=min(n, config.ivf_train_size), replace=False)] if n > config.ivf_train_size else x
    index.cp.seed = config.seed
    index.train(sample)
    index.add(x)
    index.nprobe = min(lists, config.nprobe_candidates[0])
    return index


def tune_nprobe(index: "object", embeddings: np.ndarray, queries: np.ndarray, config: IndexConfig) -> list[dict]:
    """Set ``index.nprobe`` to the smallest candidate reaching ``config.target_recall`` (recall@k vs
    exact on ``queries``), else the largest tried; returns the measured (nprobe, recall) pairs."""
    tried: list[dict] = []
    for nprobe in config.nprobe_candidates:
        index.nprobe = min(nprobe, index.nlist)
        recall = measure_recall(index, embeddings, queries, config.recall_k)
        tried.append({"nprobe": int(index.nprobe), f"recall@{config.recall_k}": recall})
        if recall >= config.target_recall or index.nprobe >= index.nlist:
            break
    return tried


def index_kind(index: "object") -> str:
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return "ivf" if isinstance(index, faiss.IndexIVF) else "hnsw"


def measure_recall(index: "object", embeddings: np.ndarray, queries: np.ndarray, k: int = 100) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over ``queries``."""
    import faiss

    x = _check(embeddings)
    q = _check(queries)
    k = min(k, x.shape[0])
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    _, truth = exact.search(q, k)
    _, found = index.search(q, k)
    hits = [len(np.intersect1d(t, f[f >= 0], assume_unique=False)) for t, f in zip(truth, found)]
    return float(np.mean(hits) / k)


def sample_queries(embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Held-out style queries when no user queries are given: noisy, renormalised item vectors."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(embeddings), size=min(n, len(embeddings)), replace=False)
    q = embeddings[rows] + 0.5 * rng.normal(size=(len(rows), embeddings.shape[1])).astype(np.float32) / np.sqrt(embeddings.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def write_index(
    out_dir: Path,
    embeddings: np.ndarray,
    item_ids: np.ndarray,
    popularity: np.ndarray,
    config: IndexConfig | None = None,
    queries: np.ndarray | None = None,
) -> dict:
    """Build the index and write ``items.faiss``, ``item_ids.npy``, ``popularity.npy``, ``meta.json``."""
    import faiss

    config = config or IndexConfig()
    x = _check(embeddings)
    if len(item_ids) != len(x) or len(popularity) != len(x):
        raise InvalidInputError(
            f"index rows disagree: {len(x)} embeddings, {len(item_ids)} item_ids, {len(popularity)} popularity"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    index = build_index(x, config)
    build_s = time.perf_counter() - started
    kind = index_kind(index)
    if queries is None:
        queries = sample_queries(x, config.recall_queries, config.seed)
    else:
        rng = np.random.default_rng(config.seed)
        queries = queries[rng.choice(len(queries), size=min(config.recall_queries, len(queries)), replace=False)]
    nprobe_tuning = tune_nprobe(index, x, queries, config) if kind == "ivf" else []
    recall = 1.0 if kind == "flat" else measure_recall(index, x, queries, config.recall_k)
    faiss.write_index(index, str(out_dir / "items.faiss"))
    np.save(out_dir / "item_ids.npy", np.asarray(item_ids, dtype=np.int64))
    np.save(out_dir / "popularity.npy", np.asarray(popularity, dtype=np.float32))
    meta = {
        "index_type": {"flat": "IndexFlatIP", "ivf": "IndexIVFFlat", "hnsw": "IndexHNSWFlat"}[kind],
        "kind": kind,
        "metric": "inner_product",
        "n_items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "params": _params(index, kind, config),
        "nprobe_tuning": nprobe_tuning,
        "exact_threshold": config.exact_threshold,
        f"recall@{config.recall_k}_vs_exact": recall,
        "recall_k": config.recall_k,
        "recall_queries": int(len(queries)),
        "build_seconds": round(build_s, 3),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _params(index: "object", kind: str, config: IndexConfig) -> dict:
    if kind == "hnsw":
        return {"hnsw_m": config.hnsw_m, "ef_construction": config.ef_construction, "ef_search": config.ef_search}
    if kind == "ivf":
        return {"nlist": int(index.nlist), "nprobe": int(index.nprobe), "target_recall": config.target_recall}
    return {}


def load_index(index_dir: Path, ef_search: int | None = None) -> tuple["object", np.ndarray, np.ndarray, dict]:
    """(faiss index, item_ids, popularity, meta) from an ``index/`` folder."""
    import faiss

    index_dir = Path(index_dir)
    path = index_dir / "items.faiss"
    if not path.is_file():
        raise NotFoundError(f"{path} is missing (build it with `cascade train`)")
    index = faiss.read_index(str(path))
    meta = json.loads((index_dir / "meta.json").read_text())
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = ef_search
    elif hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(meta.get("params", {}).get("ef_search", 256))
    return index, np.load(index_dir / "item_ids.npy"), np.load(index_dir / "popularity.npy"), meta


def config_dict(config: IndexConfig) -> dict:
    return asdict(config)
