"""Exact retrieval (cascade/online/exact_retrieval.py), on the CPU here: the top-k equals brute force
over the stored embeddings and a real FAISS flat index (exact ties aside), excluded rows never come
back while a query still gets k eligible rows, the block-wise top-k and the float16 storage with
float32 re-scoring keep it exact, and RetrievalStage with the searcher answers like with FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.online.exact_retrieval import ExactSearcher, ExactSearchOptions, embeddings_from_faiss
from cascade.online.stages import RetrievalStage


def _brute(queries: np.ndarray, items: np.ndarray, k: int, exclude=None) -> np.ndarray:
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    if exclude is not None:
        for i, e in enumerate(exclude):
            scores[i, e] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def catalog() -> np.ndarray:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3000, 16)).astype(np.float32)
    return items / np.linalg.norm(items, axis=1, keepdims=True)


@pytest.mark.parametrize("options", [
    ExactSearchOptions(dtype="float32", rescore=False),
    ExactSearchOptions(dtype="float32", blocks=8),
    ExactSearchOptions(dtype="float16"),
    ExactSearchOptions(dtype="bfloat16", blocks=8),
])
def test_top_k_is_the_exact_order_over_the_stored_vectors(catalog: np.ndarray, options: ExactSearchOptions) -> None:
    import torch

    rng = np.random.default_rng(1)
    queries = rng.normal(size=(6, 16)).astype(np.float32)
    stored = torch.from_numpy(catalog).to(getattr(torch, options.dtype)).float().numpy()  # what the device holds
    exclude = [rng.integers(0, len(catalog), size=40) for _ in range(6)]
    scores, rows = ExactSearcher(catalog, "cpu", options).search(queries, 100, exclude)
    expected = _brute(queries, stored, 100, exclude)
    assert rows.shape == (6, 100) and rows.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(rows, expected)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "best first"
    for r, e in zip(rows, exclude):
        assert not set(r.tolist()) & set(e.tolist())


def test_same_top_k_as_a_faiss_flat_index(catalog: np.ndarray) -> None:
    import faiss

    index = faiss.IndexFlatIP(catalog.shape[1])
    index.add(catalog)
    queries = np.random.default_rng(2).normal(size=(20, 16)).astype(np.float32)
    ref_scores, ref_rows = index.search(queries, 300)
    scores, rows = ExactSearcher(catalog, "cpu", ExactSearchOptions(dtype="float32", rescore=False)).search(queries, 300)
    for a, b, s in zip(rows, ref_rows, ref_scores):
        clear = b[s > s[-1] + 1e-5]  # FAISS's top-k minus anything tied with its k-th score
        assert set(clear.tolist()) <= set(a.tolist())
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)  # same scores in the same order: ties aside, same rows


def test_exclusions_leave_k_eligible_rows_and_never_pad_with_excluded(catalog: np.ndarray) -> None:
    small = catalog[:20]
    searcher = ExactSearcher(small, "cpu", ExactSearchOptions(dtype="float16"))
    q = small[:2] * 2
    everything = searcher.search_many(q, 10)
    assert [len(r) for r in everything] == [10, 10] and everything[0][0] == 0 and everything[1][0] == 1
    dropped = searcher.search_many(q, 10, [everything[0][:5], np.arange(15)])
    assert len(dropped[0]) == 10 and not set(dropped[0].tolist()) & set(everything[0][:5].tolist())
    assert sorted(dropped[1].tolist()) == list(range(15, 20)), "only 5 eligible rows: 5 returned, no -1, no excluded"
    assert ExactSearcher(small, "cpu").search_many(q[:1], 50)[0].shape == (20,)


def test_bad_input_is_named(catalog: np.ndarray) -> None:
    searcher = ExactSearcher(catalog, "cpu")
    with pytest.raises(InvalidInputError, match=r"query must be \[batch, 16\] float32"):
        searcher.search(np.zeros((2, 8), np.float32), 10)
    with pytest.raises(InvalidInputError, match="one row array per query"):
        searcher.search(np.zeros((2, 16), np.float32), 10, [np.array([1])])
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        searcher.search(np.zeros((1, 16), np.float32), 0)
    with pytest.raises(InvalidInputError, match="dtype must be one of"):
        ExactSearchOptions(dtype="int8")
    with pytest.raises(InvalidInputError, match=r"non-empty \[n_items, dim\]"):
        ExactSearcher(np.zeros((0, 4), np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_embeddings_come_back_from_every_uncompressed_faiss_index(catalog: np.ndarray, kind: str) -> None:
    import faiss

    d = catalog.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(catalog)
    index.add(catalog)
    np.testing.assert_array_equal(embeddings_from_faiss(index), catalog)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, catalog: np.ndarray) -> Path:
    import faiss

    folder = tmp_path_factory.mktemp("exact_index")
    index = faiss.IndexFlatIP(catalog.shape[1])
    index.add(catalog[:200])
    faiss.write_index(index, str(folder / "items.faiss"))
    np.save(folder / "item_ids.npy", np.arange(5000, 5200, dtype=np.int64))
    np.save(folder / "popularity.npy", np.arange(200, 0, -1).astype(np.float32))
    return folder


@pytest.mark.parametrize("drop_seen", [True, False])
def test_retrieval_stage_with_the_exact_searcher_answers_like_faiss(index_dir: Path, catalog: np.ndarray,
                                                                   drop_seen: bool) -> None:
    options = ExactSearchOptions(dtype="float32", rescore=False)
    faiss_stage = RetrievalStage(index_dir, n_candidates=50, drop_seen=drop_seen)
    exact_stage = RetrievalStage(index_dir, n_candidates=50, drop_seen=drop_seen,
                                 searcher=lambda index: ExactSearcher(embeddings_from_faiss(index), "cpu", options))
    rng = np.random.default_rng(3)
    queries = [rng.normal(size=(1, 16)).astype(np.float32) for _ in range(5)]
    cold = [False, True, False, False, False]
    seen = [np.arange(5000, 5200)[rng.integers(0, 200, size=10)] for _ in range(5)]
    exclude = [np.arange(5000, 5200)[rng.integers(0, 200, size=3)], np.empty(0, np.int64), np.array([5001]),
               np.empty(0, np.int64), np.array([123])]  # 123: not a catalog item
    alone = [faiss_stage.retrieve(*args) for args in zip(queries, cold, seen, exclude)]
    batched = exact_stage.retrieve_many(queries, cold, seen, exclude)
    for a, b, s, e in zip(alone, batched, seen, exclude):
        np.testing.assert_array_equal(a, b)
        ids = set(np.arange(5000, 5200)[b].tolist())
        assert not ids & set(e.tolist())
        assert bool(ids & set(s.tolist())) is not drop_seen or not len(s)
    assert [r.tolist() for r in faiss_stage.retrieve_many(queries, cold, seen, exclude)] == [r.tolist() for r in alone]
