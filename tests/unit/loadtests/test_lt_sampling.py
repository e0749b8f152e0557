"""Zipf sampler, request mix and id loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.errors import InvalidInputError, NotFoundError
from loadtests.sampling import RequestMix, RequestSampler, ZipfSampler, load_ids


def test_zipf_is_deterministic_and_stays_in_ids() -> None:
    ids = np.arange(100, 1100, dtype=np.int64)
    a = ZipfSampler(ids, 1.1, seed=7).sample(5000)
    b = ZipfSampler(ids, 1.1, seed=7).sample(5000)
    assert np.array_equal(a, b)
    assert np.isin(a, ids).all()
    assert not np.array_equal(a, ZipfSampler(ids, 1.1, seed=8).sample(5000))


def test_zipf_frequencies_follow_rank_law() -> None:
    ids = np.arange(1000, dtype=np.int64)
    sampler = ZipfSampler(ids, 1.0, seed=0)
    draws = sampler.sample(200_000)
    top, second = sampler.ids_by_rank[0], sampler.ids_by_rank[1]
    ratio = (draws == top).sum() / (draws == second).sum()
    assert ratio == pytest.approx(2.0, rel=0.1)  # P(r) ~ 1/r
    # the head is heavy: rank 1 alone about 1/H(1000) ~ 13 %
    assert (draws == top).mean() == pytest.approx(sampler.probabilities[0], abs=0.01)


def test_zipf_exponent_zero_is_uniform() -> None:
    sampler = ZipfSampler(np.arange(10), 0.0, seed=1)
    counts = np.bincount(sampler.sample(50_000), minlength=10)
    assert counts.min() / counts.max() > 0.9


def test_zipf_rejects_empty() -> None:
    with pytest.raises(InvalidInputError, match="ids"):
        ZipfSampler(np.array([], dtype=np.int64))


def test_request_mix_shares_and_unknown_ids() -> None:
    users = np.arange(1, 501, dtype=np.int64)
    items = np.arange(1000, 1100, dtype=np.int64)
    mix = RequestMix(unknown_share=0.2, exclude_share=0.5, explore_share=0.3, max_exclude=3)
    reqs = RequestSampler(users, mix, items, seed=3).take(5000)
    unknown = [r for r in reqs if not r.known]
    assert 0.17 < len(unknown) / len(reqs) < 0.23
    assert all(r.user_id > users.max() for r in unknown)
    assert all(r.user_id in set(users.tolist()) for r in reqs if r.known)
    with_excl = [r for r in reqs if r.exclude_item_ids.size]
    assert 0.45 < len(with_excl) / len(reqs) < 0.55
    assert all(1 <= r.exclude_item_ids.size <= 3 and np.isin(r.exclude_item_ids, items).all()
               for r in with_excl)
    explore = [r for r in reqs if r.explore > 0]
    assert 0.27 < len(explore) / len(reqs) < 0.33
    assert all(r.seed is not None for r in explore)
    assert all(r.seed is None for r in reqs if r.explore == 0)


def test_request_stream_is_deterministic() -> None:
    users = np.arange(1, 100, dtype=np.int64)
    a = [(r.user_id, r.explore, r.seed) for r in RequestSampler(users, seed=5).take(3000)]
    b = [(r.user_id, r.explore, r.seed) for r in RequestSampler(users, seed=5).take(3000)]
    assert a == b


def test_send_seed_gives_unique_seeds() -> None:
    reqs = RequestSampler(np.arange(10), RequestMix(send_seed=True), seed=0).take(500)
    assert len({r.seed for r in reqs}) == 500


def test_bad_share_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="unknown_share"):
        RequestSampler(np.arange(10), RequestMix(unknown_share=1.5))


def test_load_ids_from_dataset_folder_and_files(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": np.array([5, 3, 5, 9], dtype=np.int64)}).to_parquet(tmp_path / "users.parquet")
    pd.DataFrame({"item_id": np.array([1, 2], dtype=np.int64)}).to_parquet(tmp_path / "items.parquet")
    assert load_ids(tmp_path).tolist() == [5, 3, 9]
    assert load_ids(tmp_path, "item").tolist() == [1, 2]
    text = tmp_path / "ids.txt"
    text.write_text("user_id\n# comment\n7\n8,x\n\n7\n")
    assert load_ids(text).tolist() == [7, 8]
    np.save(tmp_path / "ids.npy", np.array([4, 2]))
    assert load_ids(tmp_path / "ids.npy").tolist() == [4, 2]


def test_load_ids_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="users.parquet"):
        load_ids(tmp_path)
    with pytest.raises(NotFoundError, match="missing.txt"):
        load_ids(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nthree\n")
    with pytest.raises(InvalidInputError, match="bad.txt:3"):
        load_ids(bad)


def test_check_answer_enforces_the_contract() -> None:
    from loadtests.wire import Answer, ResponseCheckError, check_answer, http_payload
    from loadtests.sampling import RecommendRequest

    ok = Answer(np.array([1, 2], dtype=np.int64), np.array([0.5, 0.4], dtype=np.float32), False)
    known = RecommendRequest(7, 2, np.zeros(0, dtype=np.int64), 0.0, None, known=True)
    check_answer(known, ok)
    unknown = RecommendRequest(10**9, 2, np.array([3], dtype=np.int64), 0.0, None, known=False)
    with pytest.raises(ResponseCheckError, match="degraded=True"):
        check_answer(unknown, ok)
    with pytest.raises(ResponseCheckError, match="excluded"):
        check_answer(RecommendRequest(7, 2, np.array([2]), 0.0, None, True), ok)
    with pytest.raises(ResponseCheckError, match="expected 1..1"):
        check_answer(RecommendRequest(7, 1, np.zeros(0, dtype=np.int64), 0.0, None, True), ok)
    body = http_payload(unknown)
    assert body["inputs"][2] == {"name": "exclude_item_ids", "shape": [1], "datatype": "INT64", "data": [3]}
    assert all(i["name"] != "seed" for i in body["inputs"])
