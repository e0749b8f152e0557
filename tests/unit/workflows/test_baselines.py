"""Baselines on a tiny clustered dataset built in tmp_path: real implicit ALS, no mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.errors import InvalidInputError
from cascade.metrics import ranking_metrics
from cascade.workflows.baselines import (
    ALSParams,
    ALSRecommender,
    BatchRecommender,
    Catalog,
    PopularityRecommender,
    seen_and_relevant,
    top_k_indices,
)
from cascade.workflows.split import split_interactions


def clustered_interactions(n_users: int = 300, n_items: int = 120, per_user: int = 24, seed: int = 0) -> pd.DataFrame:
    """Users in 4 taste clusters; each draws 90% of its items from its cluster's 30 items
    (Zipf-weighted), 10% uniformly. Item ids are non-contiguous raw ids (1000 + 7 i)."""
    rng = np.random.default_rng(seed)
    n_clusters = 4
    items_per_cluster = n_items // n_clusters
    rows = []
    for user in range(n_users):
        cluster = user % n_clusters
        pool = np.arange(cluster * items_per_cluster, (cluster + 1) * items_per_cluster)
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.7
        own = rng.choice(pool, size=int(per_user * 0.9), replace=False, p=weights / weights.sum())
        other = rng.choice(n_items, size=per_user - len(own), replace=False)
        chosen = np.unique(np.concatenate([own, other]))
        times = np.sort(rng.integers(1_600_000_000, 1_700_000_000, size=len(chosen)))
        rng.shuffle(chosen)
        for item, ts in zip(chosen, times):
            rows.append((10_000 + user, 1000 + 7 * int(item), int(ts), 1.0))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"])
    frame["weight"] = frame["weight"].astype(np.float32)
    return frame


@pytest.fixture(scope="module")
def data() -> tuple[Catalog, pd.DataFrame, pd.DataFrame]:
    frame = clustered_interactions()
    catalog = Catalog(np.array([1000 + 7 * i for i in range(120)], dtype=np.int64)[::-1].copy())
    train, test = split_interactions(frame, 0.2)
    return catalog, train, test


def test_top_k_breaks_ties_by_index_and_pads() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [-np.inf, 1.0, -np.inf, -np.inf, -np.inf]], dtype=np.float32)
    assert top_k_indices(scores, 2).tolist() == [[1, 2], [1, -1]]
    assert top_k_indices(scores, 4).tolist() == [[1, 2, 4, 3], [1, -1, -1, -1]]
    assert top_k_indices(scores, 7).tolist() == [[1, 2, 4, 3, 0, -1, -1], [1, -1, -1, -1, -1, -1, -1]]


def test_catalog_lookup() -> None:
    catalog = Catalog(np.array([30, 10, 20], dtype=np.int64))
    assert catalog.index_of(np.array([10, 30, 99])).tolist() == [1, 0, -1]
    assert catalog.raw(np.array([2, -1])).tolist() == [20, -1]
    with pytest.raises(InvalidInputError, match="unique"):
        Catalog(np.array([1, 1]))


def test_popularity_ranks_by_count_and_excludes_seen() -> None:
    catalog = Catalog(np.array([5, 6, 7, 8], dtype=np.int64))
    # counts: 5 -> 1, 6 -> 3, 7 -> 3, 8 -> 2; tie 6/7 broken by catalog index (6 first)
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4, 4, 4], "item_id": [6, 7, 6, 7, 6, 7, 8, 8, 5]})
    pop = PopularityRecommender.fit(catalog, train)
    recs = pop.recommend(np.array([1, 9]), 3, [np.array([6]), np.array([], dtype=np.int64)])
    assert recs.tolist() == [[7, 8, 5], [6, 7, 8]]
    # asking for more than the unseen catalog pads with -1
    recs = pop.recommend(np.array([1]), 4, [np.array([6, 7])])
    assert recs.tolist() == [[8, 5, -1, -1]]
    assert isinstance(pop, BatchRecommender)


def test_popularity_exclusion_on_dataset(data) -> None:
    catalog, train, test = data
    users, seen, relevant = seen_and_relevant(train, test)
    recs = PopularityRecommender.fit(catalog, train).recommend(users, 20, seen)
    assert recs.shape == (len(users), 20)
    for row, excluded in zip(recs, seen):
        assert not np.isin(row, excluded).any()


def test_als_beats_random_and_never_recommends_seen(data) -> None:
    catalog, train, test = data
    users, seen, relevant = seen_and_relevant(train, test)
    als = ALSRecommender(catalog, ALSParams(factors=16, regularization=0.1, alpha=10.0, iterations=10), seed=0,
                         num_threads=1).fit(train)
    assert isinstance(als, BatchRecommender)
    recs = als.recommend(users, 10, seen)
    for row, excluded in zip(recs, seen):
        assert not np.isin(row, excluded).any()
        assert len(np.unique(row)) == 10
    rng = np.random.default_rng(0)
    random_recs = np.stack([
        rng.choice(np.setdiff1d(catalog.item_ids, s), size=10, replace=False) for s in seen
    ])
    als_m = ranking_metrics(recs, relevant, ks=(10,))
    rnd_m = ranking_metrics(random_recs, relevant, ks=(10,))
    assert als_m["ndcg@10"] > 2 * rnd_m["ndcg@10"]
    assert als_m["recall@10"] > 2 * rnd_m["recall@10"]
    # deterministic with the same seed
    again = ALSRecommender(catalog, als.params, seed=0, num_threads=1).fit(train).recommend(users, 10, seen)
    assert np.array_equal(recs, again)


def test_als_cold_user_falls_back_to_popularity(data) -> None:
    catalog, train, _ = data
    als = ALSRecommender(catalog, ALSParams(factors=8, iterations=3), num_threads=1).fit(train)
    pop = PopularityRecommender.fit(catalog, train)
    none = [np.array([], dtype=np.int64)]
    assert np.array_equal(als.recommend(np.array([-5]), 5, none), pop.recommend(np.array([-5]), 5, none))


def test_als_tune_reports_grid_and_refits(data) -> None:
    catalog, train, test = data
    grid = [ALSParams(factors=8, regularization=0.1, alpha=1.0, iterations=5),
            ALSParams(factors=16, regularization=0.1, alpha=10.0, iterations=5, weighting="bm25")]
    als = ALSRecommender.tune(catalog, train, grid, seed=0, num_threads=1, progress=False)
    tuning = als.tuning
    assert tuning is not None and len(tuning.results) == 2
    assert tuning.best in grid and als.params == tuning.best
    assert tuning.n_validation_users > 0
    best_value = max(r.metrics["ndcg@10"] for r in tuning.results)
    assert tuning.results[grid.index(tuning.best)].metrics["ndcg@10"] == best_value
    details = als.details()
    assert details["tuning"]["grid"][0]["factors"] == 8
    with pytest.raises(InvalidInputError, match="objective"):
        ALSRecommender.tune(catalog, train, grid, objective="auc", progress=False)


def test_request_validation(data) -> None:
    catalog, train, _ = data
    pop = PopularityRecommender.fit(catalog, train)
    with pytest.raises(InvalidInputError, match="exclude"):
        pop.recommend(np.array([1, 2]), 5, [np.array([])])
    with pytest.raises(InvalidInputError, match="k must be"):
        pop.recommend(np.array([1]), 0, [np.array([])])


def test_seen_and_relevant_drops_seen_and_empty() -> None:
    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 12]})
    test = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [11, 13, 12, 14]})
    users, seen, relevant = seen_and_relevant(train, test)
    # user 2's only test item was seen -> dropped; user 3 is cold (no train) -> kept, empty seen
    assert users.tolist() == [1, 3]
    assert [s.tolist() for s in seen] == [[10, 11], []]
    assert [r.tolist() for r in relevant] == [[13], [14]]


def test_oracle_requires_oracle(tmp_path: Path) -> None:
    from cascade.errors import NotFoundError
    from cascade.workflows.baselines import OracleRecommender

    with pytest.raises(NotFoundError):
        OracleRecommender(tmp_path)


# -------------------------------------------------------------------------------------------- EASE^R


def test_ease_weights_match_the_closed_form() -> None:
    """B = I - P diag(1/diag P) with P = (G + lambda I)^-1, checked against a plain numpy inverse."""
    from cascade.workflows.baselines import ease_weights

    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    gram = x.T @ x
    b = ease_weights(gram, 5.0)
    p = np.linalg.inv(gram + 5.0 * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(b, expected, atol=1e-5)
    assert np.all(np.diag(b) == 0)
    with pytest.raises(InvalidInputError, match="lambda"):
        ease_weights(gram, 0.0)


def test_ease_beats_popularity_excludes_seen_and_falls_back(data) -> None:
    from cascade.workflows.baselines import EASERecommender

    catalog, train, test = data
    users, seen, relevant = seen_and_relevant(train, test)
    ease = EASERecommender(catalog, lam=30.0).fit(train)
    assert isinstance(ease, BatchRecommender)
    recs = ease.recommend(users, 10, seen)
    for row, excluded in zip(recs, seen):
        assert not np.isin(row, excluded).any()
        assert len(np.unique(row)) == 10
    pop = PopularityRecommender.fit(catalog, train)
    ease_m = ranking_metrics(recs, relevant, ks=(10,))
    pop_m = ranking_metrics(pop.recommend(users, 10, seen), relevant, ks=(10,))
    assert ease_m["ndcg@10"] > 1.5 * pop_m["ndcg@10"]
    none = [np.array([], dtype=np.int64)]
    assert np.array_equal(ease.recommend(np.array([-5]), 5, none), pop.recommend(np.array([-5]), 5, none))


def test_ease_tune_picks_the_best_validation_lambda_and_refits(data) -> None:
    from cascade.workflows.baselines import EASERecommender

    catalog, train, _ = data
    ease = EASERecommender.tune(catalog, train, lambdas=(1.0, 30.0, 3000.0), progress=False)
    tuning = ease.tuning
    assert tuning is not None and [r.params.lam for r in tuning.results] == [1.0, 30.0, 3000.0]
    best = max(tuning.results, key=lambda r: r.metrics["ndcg@10"])
    assert ease.lam == best.params.lam == tuning.best.lam
    assert ease.details()["tuning"]["grid"][0]["lam"] == 1.0
    # the refit uses all of train: its user set is train's, not the fit part's
    assert len(ease._user_ids) == train["user_id"].nunique()
    with pytest.raises(InvalidInputError, match="objective"):
        EASERecommender.tune(catalog, train, lambdas=(1.0,), objective="auc", progress=False)
    with pytest.raises(InvalidInputError, match="grid is empty"):
        EASERecommender.tune(catalog, train, lambdas=(), progress=False)


def test_ease_refuses_catalogs_above_the_cap(data, monkeypatch) -> None:
    import cascade.workflows.baselines as baselines

    catalog, train, _ = data
    monkeypatch.setattr(baselines, "EASE_MAX_ITEMS", 100)  # the 120-item catalog is now "too big"
    with pytest.raises(InvalidInputError, match="skipped above 100 items"):
        baselines.EASERecommender.tune(catalog, train, progress=False)
    with pytest.raises(InvalidInputError, match="above 100 items"):
        baselines.EASERecommender(catalog).fit(train)
