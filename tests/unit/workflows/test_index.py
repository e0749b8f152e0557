"""FAISS index choice, approximate-vs-exact recall, seeded construction, artifact round trip."""

from __future__ import annotations

import json

import numpy as np

from cascade.workflows.index import IndexConfig, build_index, index_kind, load_index, measure_recall, sample_queries, write_index


def _catalog(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_uses_exact_below_threshold() -> None:
    x = _catalog(500)
    assert index_kind(build_index(x, IndexConfig(exact_threshold=1000))) == "flat"
    assert index_kind(build_index(x, IndexConfig(exact_threshold=100))) == "ivf"
    assert index_kind(build_index(x, IndexConfig(exact_threshold=100, large_kind="hnsw"))) == "hnsw"


def test_ivf_nprobe_is_tuned_to_the_target_recall_and_persisted(tmp_path) -> None:
    x = _catalog(6000)
    queries = sample_queries(x, 200, seed=1)
    config = IndexConfig(exact_threshold=100, target_recall=0.95, recall_queries=200)
    meta = write_index(tmp_path, x, np.arange(6000), np.ones(6000), config, queries=queries)
    assert meta["index_type"] == "IndexIVFFlat"
    tuning = meta["nprobe_tuning"]
    assert tuning[-1]["recall@100"] >= 0.95 or tuning[-1]["nprobe"] == meta["params"]["nlist"]
    assert all(t["recall@100"] < 0.95 for t in tuning[:-1])  # the smallest probe count that reaches it
    index, *_ = load_index(tmp_path)
    assert index.nprobe == meta["params"]["nprobe"] == tuning[-1]["nprobe"]
    assert meta["recall@100_vs_exact"] == measure_recall(index, x, queries[:200], 100)


def test_hnsw_recall_vs_exact() -> None:
    x = _catalog(5000)
    index = build_index(x, IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=100, ef_search=256))
    recall = measure_recall(index, x, sample_queries(x, 200, seed=1), k=100)
    assert recall >= 0.95


def test_hnsw_construction_is_deterministic() -> None:
    x = _catalog(3000)
    q = sample_queries(x, 50, seed=2)
    a = build_index(x, IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)).search(q, 20)[1]
    b = build_index(x, IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)).search(q, 20)[1]
    assert np.array_equal(a, b)


def test_write_and_load(tmp_path) -> None:
    x = _catalog(2000)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3
    meta = write_index(tmp_path, x, ids, np.arange(2000, dtype=np.float32),
                       IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=64, recall_queries=100))
    assert meta["index_type"] == "IndexHNSWFlat" and 0.9 <= meta["recall@100_vs_exact"] <= 1.0
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    index, item_ids, pop, _ = load_index(tmp_path)
    assert index.ntotal == 2000 and np.array_equal(item_ids, ids) and pop.dtype == np.float32
    _, rows = index.search(x[:5], 1)
    assert np.array_equal(rows[:, 0], np.arange(5))  # row i = catalog row i
