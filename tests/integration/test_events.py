"""Interaction events and new items through the real tritonserver (the session's tiny export):
a pushed item disappears from that user's next answer, unknown users become warm, bad batches are
refused by row and field and change nothing, and an item added with `cascade items upsert` is
served before anyone interacted with it (then retired again, so later tests see the old catalog)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cascade.client import RecommendClient
from cascade.errors import InvalidInputError
from cascade.events.client import EventsClient
from cascade.events.log import read_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clients(recommend_server):
    with RecommendClient(recommend_server.grpc_url) as rec, EventsClient(recommend_server.grpc_url) as events:
        yield rec, events


@pytest.fixture(scope="module")
def free_users(recommend_server, sample_users):
    """Known users no other test asks about (the events change their answers)."""
    taken = set(sample_users) | set(recommend_server.known_user_ids[:2])
    return [u for u in reversed(recommend_server.known_user_ids) if u not in taken][:4]


def test_pushed_item_disappears_from_the_next_answer(clients, recommend_server, free_users) -> None:
    rec, events = clients
    user = free_users[0]
    before = rec.recommend(user, k=10)
    target = before.item_ids[0]
    result = events.push(user, [target])
    assert result.accepted == 1 and result.duplicates == 0
    train = pd.read_parquet(recommend_server.data_dir / "train.parquet", columns=["user_id"])
    assert result.n_interactions == int((train.user_id == user).sum()) + 1
    after = rec.recommend(user, k=10)  # the very next request
    assert target not in after.item_ids
    assert after.degraded is False
    logged = read_log(recommend_server.export_root / "interaction_log")
    assert ((logged.user_id == user) & (logged.item_id == target)).sum() == 1


def test_retry_is_deduplicated(clients, free_users) -> None:
    _, events = clients
    user, ts, item = free_users[1], int(time.time()) - 60, _any_item(clients)
    first = events.push(user, [item], [ts])
    again = events.push(user, [item], [ts])  # a client retry
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 1)
    assert again.n_interactions == first.n_interactions


def _any_item(clients) -> int:
    rec, _ = clients
    return rec.recommend(10**12, k=1).item_ids[0]  # the most popular item (cold start)


def test_unknown_user_is_created_and_warm(clients) -> None:
    rec, events = clients
    user = 10**9 + 7
    cold = rec.recommend(user, k=10)
    assert cold.degraded is True
    result = events.push(user, [cold.item_ids[0], cold.item_ids[1]])
    assert result.n_interactions == 2
    warm = rec.recommend(user, k=10)
    assert warm.degraded is False
    assert not {cold.item_ids[0], cold.item_ids[1]} & set(warm.item_ids)


def test_bad_batches_are_refused_by_row_and_field_and_apply_nothing(clients, free_users) -> None:
    rec, events = clients
    user = free_users[2]
    item = _any_item(clients)
    with pytest.raises(InvalidInputError, match=r"row 1: item_ids\[1\] = 987654321 is not in the catalog"):
        events.push(user, [item, 987654321])
    with pytest.raises(InvalidInputError, match="'timestamps' has 1 values for 2 item_ids"):
        events.push(user, [item, item], [int(time.time())])
    with pytest.raises(InvalidInputError, match=r"row 0: timestamps\[0\] .* in the future"):
        events.push(user, [item], [int(time.time()) + 86_400])
    with pytest.raises(InvalidInputError, match=r"row 0: item_ids\[0\] = -4"):
        events.push(user, [-4])
    baseline = events.push(user, [item])  # the first accepted event of this user
    assert baseline.accepted == 1


def test_cli_push_and_ingest(recommend_server, free_users, tmp_path) -> None:
    user = free_users[3]
    item = int(pd.read_parquet(recommend_server.data_dir / "items.parquet")["item_id"].iloc[0])
    cli = [sys.executable, "-m", "cascade.cli"]
    out = subprocess.run([*cli, "events", "push", "--url", recommend_server.grpc_url, "--user", str(user),
                          "--item", str(item)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "accepted 1" in out.stdout
    now = int(time.time())
    path = tmp_path / "events.csv"
    pd.DataFrame({"user_id": [user, user, 10**9 + 8], "item_id": [item, item, item],
                  "timestamp": [now - 10, now - 10, now - 5]}).to_csv(path, index=False)
    out = subprocess.run([*cli, "events", "ingest", str(path), "--url", recommend_server.grpc_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 events, accepted 2, duplicates 1" in out.stdout
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": [user], "item_id": [555_555_555]}).to_csv(bad, index=False)
    out = subprocess.run([*cli, "events", "ingest", str(bad), "--url", recommend_server.grpc_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "is not in the catalog" in out.stderr


def _wait_for(predicate, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_new_item_is_served_before_any_interaction(clients, recommend_server, free_users, tmp_path) -> None:
    """Upsert a new item (attributes of a popular item, a fresh id) into the served export; within
    the stages' refresh interval (1 s here) it is in the index and the snapshot, recommended to a
    user who could get every eligible item, and accepted as an event's item id. It is then retired
    (available=false) so later tests of the session see only the dataset's items."""
    from cascade.events.items import upsert_items

    rec, events = clients
    items = pd.read_parquet(recommend_server.data_dir / "items.parquet")
    template = items[items.item_id == recommend_server.popular_item_ids[0]].iloc[0]
    new_id = int(items.item_id.max()) + 1000
    row = {"item_id": new_id, "category": template["category"], "brand": template["brand"],
           "price": float(template["price"]), "first_seen": int(time.time()), "available": True}
    path = tmp_path / "new_items.parquet"
    pd.DataFrame([row]).to_parquet(path, index=False)
    result = upsert_items(recommend_server.export_root, path)
    assert result.added == [new_id] and result.embedded == 1
    user = recommend_server.known_user_ids[len(recommend_server.known_user_ids) // 2]
    try:
        k = 250  # the tiny catalog: every unseen available item fits in the answer
        served = _wait_for(lambda: new_id in rec.recommend(user, k=k).item_ids)
        assert served, "the new item never appeared in the answer"
        assert events.push(user, [new_id]).accepted == 1  # the events model knows the new item
        assert new_id not in rec.recommend(user, k=k).item_ids  # now seen
    finally:
        pd.DataFrame([{"item_id": new_id, "available": False}]).to_parquet(path, index=False)
        upsert_items(recommend_server.export_root, path)
    other = free_users[0]
    assert _wait_for(lambda: new_id not in rec.recommend(other, k=250).item_ids)


def test_retrain_warm_starts_on_the_logged_events_into_a_servable_export(recommend_server, tmp_path) -> None:
    """`cascade retrain` on the served export + the log the tests above filled: the vocabularies grow
    by the users the events created, the weights are carried over, and the new export answers (its
    stages, in process) with the logged items filtered as seen."""
    from cascade.events.retrain import RetrainConfig, retrain
    from cascade.online.export_layout import ExportLayout
    from cascade.online.pipeline import InProcessRecommender
    from cascade.workflows.artifacts import TrainConfig
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    log = recommend_server.export_root / "interaction_log"
    logged = read_log(log)
    assert len(logged) and (logged.user_id == 10**9 + 7).any()
    config = RetrainConfig(warm_epochs=1, train=TrainConfig(retrieval=RetrievalTrainConfig(progress=False),
                                                             ranking=RankingTrainConfig(progress=False)))
    result = retrain(recommend_server.export_root, str(log), tmp_path / "retrained", config=config)
    assert result.mode == "warm" and result.n_events == len(logged) and result.new_users >= 1
    retrieval = result.warm_start["retrieval"]
    assert retrieval["remapped"]["item_embedding.weight"] > 10 and retrieval["copied"] > 0
    assert "item_embedding.weight" not in retrieval["fresh"]
    # no train/serve skew: the warm ranker is trained on the merged candidates serving sends it
    # (item-to-item neighbours refitted, candidate_source/candidate_score filled), like `cascade train`;
    # before the fix retrain passed no neighbours (features all zero) and the export had no candidates/
    ranking_meta = json.loads((result.artifacts_dir / "ranking" / "meta.json").read_text())["training"]
    assert ranking_meta["candidate_mix"] is not None and len(ranking_meta["candidate_weight_search"]) > 1
    assert (result.export_root / "artifacts" / "candidates" / "neighbours.npy").is_file()
    layout = ExportLayout(result.export_root)
    assert (layout.model_repository / "interactions" / "config.pbtxt").is_file()
    rec = InProcessRecommender(layout)
    user = int(logged.user_id.iloc[0])
    answer = rec.recommend(user, top_k=10)
    assert len(answer.item_ids) == 10 and not answer.degraded
    assert not set(logged[logged.user_id == user].item_id.tolist()) & set(answer.item_ids.tolist())
    assert not rec.recommend(10**9 + 7, top_k=5).degraded  # a user the events created is now trained
