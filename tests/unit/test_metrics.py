"""cascade.metrics against small examples worked by hand (log2(3) = 1.58496, log2(6) = 2.58496)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.metrics import (
    hit_matrix,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    per_user_metrics,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

D2 = 1 / math.log2(3)  # discount at rank 2 = 0.63093
D3 = 1 / math.log2(4)  # rank 3 = 0.5
D5 = 1 / math.log2(6)  # rank 5 = 0.38685


def arr(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def rel(*sets: list[int]) -> list[np.ndarray]:
    return [np.array(s, dtype=np.int64) for s in sets]


# Example A: recs [1, 2, 3, 4, 5], relevant {2, 5, 9}.
#   hits = [0, 1, 0, 0, 1]
#   K=5: precision = 2/5; recall = 2/3; hit = 1
#        DCG = 1/log2(3) + 1/log2(6) = 0.63093 + 0.38685 = 1.01778
#        IDCG over min(5, 3) = 3 ranks = 1 + 0.63093 + 0.5 = 2.13093 -> NDCG = 0.47763
#        AP = (P@2 + P@5) / min(5, 3) = (1/2 + 2/5) / 3 = 0.3
#   K=3: hits [0, 1, 0]: precision 1/3, recall 1/3, NDCG = 0.63093 / 2.13093 = 0.29608,
#        AP = (1/2) / 3 = 1/6
A_RECS = arr([1, 2, 3, 4, 5])
A_REL = rel([2, 5, 9])


def test_example_a_k5() -> None:
    assert precision_at_k(A_RECS, A_REL, 5) == pytest.approx(0.4)
    assert recall_at_k(A_RECS, A_REL, 5) == pytest.approx(2 / 3)
    assert hit_rate_at_k(A_RECS, A_REL, 5) == pytest.approx(1.0)
    assert ndcg_at_k(A_RECS, A_REL, 5) == pytest.approx((D2 + D5) / (1 + D2 + D3))
    assert ndcg_at_k(A_RECS, A_REL, 5) == pytest.approx(0.47763, abs=1e-5)
    assert map_at_k(A_RECS, A_REL, 5) == pytest.approx(0.3)


def test_example_a_k3_truncates() -> None:
    assert precision_at_k(A_RECS, A_REL, 3) == pytest.approx(1 / 3)
    assert recall_at_k(A_RECS, A_REL, 3) == pytest.approx(1 / 3)
    assert ndcg_at_k(A_RECS, A_REL, 3) == pytest.approx(0.29608, abs=1e-5)
    assert map_at_k(A_RECS, A_REL, 3) == pytest.approx(1 / 6)


def test_padding_and_fewer_recs_than_k() -> None:
    # recs [7, -1, -1], relevant {7}, K=5: hits [1,0,0,0,0]
    #   precision = 1/5 (divided by K, not by 1 returned item); recall 1; NDCG 1/1; AP = 1/min(5,1) = 1
    recs = arr([7, -1, -1])
    relevant = rel([7])
    assert precision_at_k(recs, relevant, 5) == pytest.approx(0.2)
    assert recall_at_k(recs, relevant, 5) == pytest.approx(1.0)
    assert ndcg_at_k(recs, relevant, 5) == pytest.approx(1.0)
    assert map_at_k(recs, relevant, 5) == pytest.approx(1.0)
    # only 2 columns, K=5: recs [5, 6], relevant {6}: hits [0,1,0,0,0]
    #   precision 1/5, recall 1, NDCG = 0.63093 / 1, AP = (1/2) / 1
    recs2, rel2 = arr([5, 6]), rel([6])
    assert hit_matrix(recs2, rel2, 5).tolist() == [[False, True, False, False, False]]
    assert precision_at_k(recs2, rel2, 5) == pytest.approx(0.2)
    assert ndcg_at_k(recs2, rel2, 5) == pytest.approx(D2)
    assert map_at_k(recs2, rel2, 5) == pytest.approx(0.5)


def test_padding_never_hits() -> None:
    recs = arr([-1, -1])
    assert hit_matrix(recs, rel([-1, 3]), 2).tolist() == [[False, False]]


def test_more_relevant_than_k() -> None:
    # recs [1, 2], relevant {1, 2, 3, 4}, K=2: recall = 2/4, but NDCG and AP are perfect
    # because their ideal is over min(K, |R|) = 2 ranks: IDCG = 1 + 0.63093 = DCG; AP = (1 + 1)/2.
    recs, relevant = arr([1, 2]), rel([1, 2, 3, 4])
    assert recall_at_k(recs, relevant, 2) == pytest.approx(0.5)
    assert precision_at_k(recs, relevant, 2) == pytest.approx(1.0)
    assert ndcg_at_k(recs, relevant, 2) == pytest.approx(1.0)
    assert map_at_k(recs, relevant, 2) == pytest.approx(1.0)


def test_no_hits_is_zero() -> None:
    recs, relevant = arr([3, 4]), rel([1, 2])
    for fn in (precision_at_k, recall_at_k, ndcg_at_k, map_at_k, hit_rate_at_k):
        assert fn(recs, relevant, 2) == 0.0


def test_users_without_relevant_items_are_excluded() -> None:
    # user 0: recs [1, 2], relevant {1}: precision@2 = 1/2, recall 1, NDCG 1, AP 1
    # user 1: relevant {} -> excluded, so the means equal user 0's values
    recs = arr([1, 2], [3, 4])
    relevant = rel([1], [])
    out = ranking_metrics(recs, relevant, ks=(2,))
    assert out["n_users"] == 1
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(1.0)
    assert out["ndcg@2"] == pytest.approx(1.0)
    assert out["map@2"] == pytest.approx(1.0)
    per_user = per_user_metrics(recs, relevant, 2)
    assert per_user["mask"].tolist() == [True, False]
    assert math.isnan(per_user["ndcg"][1])


def test_mean_over_users() -> None:
    # users = example A and the padded example, K=5:
    #   precision (0.4 + 0.2)/2 = 0.3; recall (2/3 + 1)/2 = 5/6; AP (0.3 + 1)/2 = 0.65
    recs = arr([1, 2, 3, 4, 5], [7, -1, -1, -1, -1])
    relevant = rel([2, 5, 9], [7])
    out = ranking_metrics(recs, relevant, ks=(5,))
    assert out["precision@5"] == pytest.approx(0.3)
    assert out["recall@5"] == pytest.approx(5 / 6)
    assert out["map@5"] == pytest.approx(0.65)
    assert out["ndcg@5"] == pytest.approx((0.47763 + 1.0) / 2, abs=1e-5)
    assert out["hit_rate@5"] == pytest.approx(1.0)


def test_duplicate_relevant_ids_are_ignored() -> None:
    assert recall_at_k(A_RECS, rel([2, 2, 5, 9, 9]), 5) == pytest.approx(2 / 3)


def test_large_raw_ids() -> None:
    big = 9_000_000_000_000
    recs = arr([big, big + 1])
    assert recall_at_k(recs, rel([big + 1]), 2) == pytest.approx(1.0)


def test_rejects_repeated_recommendations() -> None:
    with pytest.raises(InvalidInputError, match="repeats an item"):
        recall_at_k(arr([1, 1, 2]), rel([1]), 3)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidInputError, match="one per user"):
        recall_at_k(arr([1, 2]), rel([1], [2]), 2)
    with pytest.raises(InvalidInputError, match="2-D"):
        recall_at_k(np.array([1, 2]), rel([1]), 2)
    with pytest.raises(InvalidInputError, match="k must be"):
        recall_at_k(arr([1, 2]), rel([1]), 0)
