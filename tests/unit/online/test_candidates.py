"""Multi-source candidates (cascade.online.candidates): the merge rule, the item-to-item scores and
the neighbour artifact built from real interactions (EASE^R and cosine co-occurrence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.errors import InvalidInputError, NotFoundError
from cascade.online.candidates import (
    ANN,
    ITEM2ITEM,
    POPULAR,
    CandidateSources,
    ItemNeighbours,
    SourceMix,
    merge_sources,
    not_in,
)


def neighbours_fixture() -> ItemNeighbours:
    # 6 catalog rows; row 0 -> (3: 0.5, 4: 0.25), row 1 -> (3: 0.5, 5: 1.0), others none
    rows = np.full((6, 2), -1, np.int32)
    weights = np.zeros((6, 2), np.float32)
    rows[0], weights[0] = [3, 4], [0.5, 0.25]
    rows[1], weights[1] = [5, 3], [1.0, 0.5]
    return ItemNeighbours(rows, weights, {})


def test_item2item_scores_sum_neighbour_weights() -> None:
    rows, scores = neighbours_fixture().scores(np.array([0, 1, -1]))
    assert rows.tolist() == [3, 4, 5]
    assert scores.tolist() == [1.0, 0.25, 1.0]
    assert neighbours_fixture().scores(np.array([-1]))[0].size == 0


def test_merge_interleaves_by_quota_dedupes_and_sets_every_bit() -> None:
    rows, bits = merge_sources([np.array([10, 11, 12, 13]), np.array([11, 20, 21]), np.array([30])], [2, 2, 0], 5)
    # keys: ann 10:0, 11:.5, 12:1, 13:1.5; i2i 11:0, 20:.5, 21:1 -> 10, 11, (11), 20, 12, 21
    assert rows.tolist() == [10, 11, 20, 12, 21]
    assert bits.tolist() == [ANN, ANN | ITEM2ITEM, ITEM2ITEM, ANN, ITEM2ITEM]
    # a short source leaves its slots to the others
    rows, _ = merge_sources([np.array([1, 2, 3, 4]), np.array([9])], [2, 2], 4)
    assert rows.tolist() == [1, 9, 2, 3]


def test_candidate_sources_drop_seen_and_use_popular_for_short_histories() -> None:
    popular = np.array([5, 4, 3, 2, 1, 0])
    sources = CandidateSources(4, popular, neighbours_fixture(), SourceMix(item2item=0.5, popular=0.25, short_history=3))
    merged = sources.merge(np.array([2, 0, 4, 1]), np.array([0, 1]), drop=np.array([0, 1]))
    assert not np.isin(merged.rows, [0, 1]).any()
    assert len(merged.rows) == len(set(merged.rows.tolist())) == 4
    by_row = dict(zip(merged.rows.tolist(), merged.source.tolist()))
    assert by_row[5] & ITEM2ITEM and by_row[5] & POPULAR  # 5 is a neighbour and the most popular
    assert by_row[2] & ANN and not by_row[2] & ITEM2ITEM
    scores = dict(zip(merged.rows.tolist(), merged.item2item_score.tolist()))
    assert scores[3] == 1.0 and scores[2] == 0.0
    # a long history gets no popular share
    long_sources = CandidateSources(4, popular, neighbours_fixture(), SourceMix(0.5, 0.25, short_history=1))
    merged = long_sources.merge(np.array([2, 4, 3]), np.array([0, 1]), drop=np.array([0, 1]))
    assert not (merged.source & POPULAR).any()
    # cold start: popularity only
    cold = sources.merge(np.zeros(0, np.int64), np.zeros(0, np.int64), drop=np.array([5]), cold_start=True)
    assert cold.rows.tolist() == [4, 3, 2, 1] and (cold.source == POPULAR).all()


def reference_merge(sources: CandidateSources, ann: np.ndarray, recent: np.ndarray, drop: np.ndarray,
                    cold_start: bool) -> tuple[list[int], list[int], list[float]]:
    """The merge rule of the module docstring, written out in plain Python (lists, dicts, sorted)."""
    n, dropped = sources.n_candidates, set(drop.tolist())
    popular = [r for r in sources.popular_rows.tolist() if r not in dropped][:n]
    if cold_start:
        return popular, [POPULAR] * len(popular), [0.0] * len(popular)
    recent_l = [r for r in recent.tolist() if r >= 0]
    scores: dict[int, float] = {}
    if sources.neighbours is not None:
        for r in recent_l:
            for c, w in zip(sources.neighbours.rows[r].tolist(), sources.neighbours.weights[r].tolist()):
                if c >= 0:
                    scores[c] = scores.get(c, 0.0) + w
    i2i = [c for c in sorted(scores, key=lambda c: (-scores[c], c)) if c not in dropped][:n]
    ann_l = [r for r in ann.tolist() if r >= 0 and r not in dropped][:n]
    quotas = sources.mix.quotas(n, len(recent_l), sources.neighbours is not None)
    lists = [lst if q > 0 else [] for lst, q in zip((ann_l, i2i, popular), quotas)]
    keyed = sorted((i / q, s, r) for s, (lst, q) in enumerate(zip(lists, quotas)) for i, r in enumerate(lst))
    rows: list[int] = []
    for _, _, r in keyed:
        if r not in rows:
            rows.append(r)
    rows = rows[:n]
    bits = [sum(1 << s for s, lst in enumerate(lists) if r in lst) for r in rows]
    return rows, bits, [scores.get(r, 0.0) for r in rows]


@pytest.mark.parametrize("mix", [SourceMix(0.0, 0.1, 5), SourceMix(0.5, 0.1, 5), SourceMix(0.25, 0.0, 0),
                                 SourceMix(1.0, 0.0, 3)])
def test_merge_equals_the_written_out_rule_on_random_users(mix: SourceMix) -> None:
    """Sources without slots are skipped and drop is matched by binary search (speed); the lists
    must still be exactly the documented rule's, including bitmasks and item-to-item scores."""
    rng = np.random.default_rng(7)
    n_items, m = 80, 6
    rows = rng.integers(-1, n_items, size=(n_items, m)).astype(np.int32)
    weights = rng.choice(np.array([0.25, 0.5, 1.0, 2.0], np.float32), size=(n_items, m))  # exact sums
    sources = CandidateSources(12, rng.permutation(n_items), ItemNeighbours(rows, weights, {}), mix)
    for case in range(150):
        recent = rng.integers(-1, n_items, size=int(rng.choice([0, 1, 3, 8])))
        drop = rng.integers(0, n_items, size=int(rng.choice([0, 1, 5, 20])))  # unsorted, with repeats
        ann = rng.permutation(n_items)[: int(rng.choice([0, 5, 30]))]
        cold = bool(case % 10 == 0)
        merged = sources.merge(ann, recent, drop, cold_start=cold)
        want_rows, want_bits, want_scores = reference_merge(sources, ann, recent, drop, cold)
        assert merged.rows.tolist() == want_rows, case
        assert merged.source.tolist() == want_bits, case
        assert merged.item2item_score.tolist() == want_scores, case


def test_not_in_matches_isin() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 50):
        values = rng.integers(0, 40, size=30)
        drop = np.unique(rng.integers(0, 40, size=size))
        assert not_in(values, drop).tolist() == (~np.isin(values, drop)).tolist()


def test_without_neighbours_the_ann_order_is_kept() -> None:
    sources = CandidateSources(3, np.arange(6), None, SourceMix(0.5, 0.1, 5))
    merged = sources.merge(np.array([4, 2, 5, 1]), np.array([1, 2, 3, 4, 5, 0]), drop=np.array([2]))
    assert merged.rows.tolist() == [4, 5, 1] and (merged.source == ANN).all()


def test_bad_configuration_is_named() -> None:
    with pytest.raises(InvalidInputError, match="item2item"):
        SourceMix(item2item=1.5)
    with pytest.raises(InvalidInputError, match="<= 1"):
        SourceMix(item2item=0.7, popular=0.5)
    with pytest.raises(InvalidInputError, match="cover 6 catalog rows"):
        CandidateSources(3, np.arange(5), neighbours_fixture())
    with pytest.raises(InvalidInputError, match="n_items, M"):
        ItemNeighbours(np.zeros((3, 2), np.int32), np.zeros((3, 3), np.float32), {})


def clustered(n_users: int = 200, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two taste clusters (items 0-19 and 20-39): co-occurrence stays inside a cluster."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        base = 20 * (user % 2)
        for t, item in enumerate(rng.choice(20, size=8, replace=False)):
            rows.append((user, 500 + base + int(item), 1_600_000_000 + t))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.mark.parametrize("method", ["ease", "cosine"])
def test_built_neighbours_stay_in_the_cluster_and_round_trip(tmp_path: Path, method: str) -> None:
    from cascade.workflows.candidates import CandidatesConfig, build_item_neighbours

    item_ids = np.arange(500, 540, dtype=np.int64)[::-1].copy()  # catalog order != id order
    built = build_item_neighbours(item_ids, clustered(), CandidatesConfig(top_m=5, method=method))
    assert built.rows.shape == (40, 5) and built.meta["method"] == method
    cluster = (item_ids >= 520).astype(int)  # cluster of each catalog row
    valid = built.rows >= 0
    assert valid.all() and (built.weights[valid] > 0).all()
    assert (cluster[built.rows] == cluster[:, None]).all()
    assert (built.rows != np.arange(40)[:, None]).all()  # never the item itself
    assert (np.diff(built.weights, axis=1) <= 0).all()  # best first
    if method == "ease":
        assert built.meta["lambda"] > 0 and built.meta["tuning"]["grid"]
    built.save(tmp_path / "candidates")
    loaded = ItemNeighbours.load(tmp_path / "candidates")
    assert np.array_equal(loaded.rows, built.rows) and loaded.meta["method"] == method
    with pytest.raises(NotFoundError, match="cascade train"):
        ItemNeighbours.load(tmp_path / "nothing")


def test_offline_lists_equal_the_online_merge_and_lookup_finds_pairs() -> None:
    """Training builds its candidate lists with the same CandidateSources as the retrieval stage."""
    from cascade.workflows.candidates import merged_candidate_lists, tune_item2item_share

    popularity = np.array([1.0, 5.0, 3.0, 0.0, 2.0, 4.0])
    ann = np.array([[2, 4, -1, -1], [5, 3, 2, 4]])
    recent = np.array([[0, 1, -1], [-1, -1, -1]])
    mix = SourceMix(item2item=0.5, popular=0.25, short_history=3)
    lists = merged_candidate_lists(ann, recent, popularity, neighbours_fixture(), mix, 4)
    online = CandidateSources(4, np.argsort(-popularity, kind="stable"), neighbours_fixture(), mix)
    for i in range(2):
        expected = online.merge(ann[i], recent[i], drop=recent[i][recent[i] >= 0])
        m = len(expected.rows)
        assert lists.rows[i, :m].tolist() == expected.rows.tolist() and (lists.rows[i, m:] == -1).all()
        assert lists.source[i, :m].tolist() == expected.source.tolist()
        src, score = lists.lookup(np.full(m, i), expected.rows)
        assert src.tolist() == expected.source.tolist() and np.allclose(score, expected.item2item_score)
    src, score = lists.lookup(np.array([0, 1]), np.array([0, -1]))  # not in the list / padding
    assert src.tolist() == [0, 0] and score.tolist() == [0.0, 0.0]
    best, table = tune_item2item_share(ann, recent, np.array([3, 5]), popularity, neighbours_fixture(), mix, 4,
                                       shares=(0.0, 0.5))
    assert [row["item2item_share"] for row in table] == [0.0, 0.5]
    assert best.item2item == max(table, key=lambda r: r["val_candidate_recall@4"])["item2item_share"]
