"""The `recommend` ensemble against a real tritonserver (gRPC and HTTP)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from cascade.client import RecommendClient
from cascade.errors import InvalidInputError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(recommend_server):
    with RecommendClient(recommend_server.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def raw(recommend_server):
    c = grpcclient.InferenceServerClient(recommend_server.grpc_url)
    yield c
    c.close()


def _tensor(name, array, dtype):
    t = grpcclient.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def _raw_request(raw, user_id=None, top_k=None, exclude=None, explore=None, seed=None, *, dtypes=None):
    dtypes = dtypes or {}
    inputs = []
    if user_id is not None:
        inputs.append(_tensor("user_id", np.asarray(user_id, dtype=dtypes.get("user_id", np.int64)).reshape(-1),
                              {np.int64: "INT64", np.int32: "INT32"}[dtypes.get("user_id", np.int64)]))
    if top_k is not None:
        inputs.append(_tensor("top_k", np.asarray([top_k], dtype=np.int32), "INT32"))
    if exclude is not None:
        inputs.append(_tensor("exclude_item_ids", np.asarray(exclude, dtype=np.int64), "INT64"))
    if explore is not None:
        inputs.append(_tensor("explore", np.asarray([explore], dtype=np.float32), "FP32"))
    if seed is not None:
        inputs.append(_tensor("seed", np.asarray([seed], dtype=np.int64), "INT64"))
    return raw.infer("recommend", inputs)


def test_raw_four_input_request_matches_the_wire_contract(raw, recommend_server):
    user = recommend_server.known_user_ids[0]
    result = _raw_request(raw, [user], 10, [], 0.0)
    item_ids, scores = result.as_numpy("item_ids"), result.as_numpy("scores")
    assert item_ids.dtype == np.int64 and item_ids.shape == (10,)
    assert scores.dtype == np.float32 and scores.shape == (10,)
    assert result.as_numpy("model_version").shape == (1,)
    assert result.as_numpy("degraded").dtype == np.bool_
    assert set(item_ids.tolist()) <= set(recommend_server.categories)  # raw ids out


def test_known_users_get_unique_unseen_items_in_score_order(client, recommend_server, sample_users):
    for user in sample_users:
        answer = client.recommend(user, k=10)
        assert len(answer.item_ids) == 10
        assert len(set(answer.item_ids)) == 10
        assert not set(answer.item_ids) & recommend_server.seen[user]
        # score order, except items the category cap (3 per category in the top 5) held back: they
        # follow after the window, so a score can only rise at a held-back item of a full category
        top5 = Counter(recommend_server.categories[i] for i in answer.item_ids[:5])
        for i in range(1, len(answer.scores)):
            if answer.scores[i] > answer.scores[i - 1]:
                assert i >= 5 and top5[recommend_server.categories[answer.item_ids[i]]] == 3, (user, answer)
        assert answer.degraded is False
        assert answer.model_version


def test_excluded_items_never_come_back(client, sample_users):
    user = sample_users[0]
    first = client.recommend(user, k=10)
    again = client.recommend(user, k=10, exclude=first.item_ids[:5] + [123456789])
    assert not set(first.item_ids[:5]) & set(again.item_ids)
    assert len(again.item_ids) == 10


def test_deterministic_when_explore_is_zero(client, sample_users):
    for user in sample_users[:4]:
        a, b = client.recommend(user, k=20), client.recommend(user, k=20)
        assert a.item_ids == b.item_ids and a.scores == b.scores
        assert a.seed_used == -1


def test_exploration_differs_and_replays_with_its_seed(client, sample_users):
    user = sample_users[1]
    greedy = client.recommend(user, k=10)
    sampled = [client.recommend(user, k=10, explore=1.0, seed=s) for s in range(6)]
    assert any(s.item_ids != greedy.item_ids for s in sampled)
    assert len({tuple(s.item_ids) for s in sampled}) > 1
    for s, seed in zip(sampled, range(6)):
        assert s.seed_used == seed
        assert client.recommend(user, k=10, explore=1.0, seed=seed).item_ids == s.item_ids
    fresh = client.recommend(user, k=10, explore=1.0)
    assert fresh.seed_used >= 0
    assert client.recommend(user, k=10, explore=1.0, seed=fresh.seed_used).item_ids == fresh.item_ids


def test_category_cap_holds_in_the_top_five(client, recommend_server, sample_users):
    for user in sample_users:
        answer = client.recommend(user, k=10)
        top5 = Counter(recommend_server.categories[i] for i in answer.item_ids[:5])
        assert max(top5.values()) <= 3, (user, top5)


def test_unknown_user_gets_popular_items_flagged_degraded(client, recommend_server):
    answer = client.recommend(987_654_321, k=10)
    assert answer.degraded is True
    assert len(answer.item_ids) == 10
    assert set(answer.item_ids) <= set(recommend_server.popular_item_ids)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(user_id=[1], top_k=0, exclude=[], explore=0.0), "top_k"),
        (dict(user_id=[1], top_k=-3, exclude=[], explore=0.0), "top_k"),
        (dict(user_id=[1], top_k=1001, exclude=[], explore=0.0), "top_k"),
        (dict(user_id=[1], top_k=301, exclude=[], explore=0.0), "top_k"),
        (dict(user_id=[-5], top_k=10, exclude=[], explore=0.0), "user_id"),
        (dict(user_id=[1], top_k=10, exclude=[-1], explore=0.0), "exclude_item_ids"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=float("nan")), "explore"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=-1.0), "explore"),
        (dict(user_id=[1, 2], top_k=10, exclude=[], explore=0.0), "user_id"),
        (dict(user_id=[1], top_k=None, exclude=[], explore=0.0), "top_k"),
        (dict(user_id=None, top_k=10, exclude=[], explore=0.0), "user_id"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=None), "explore"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=0.0, dtypes={"user_id": np.int32}), "user_id"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=11.0), "explore"),
        (dict(user_id=[1], top_k=10, exclude=[], explore=1.0, seed=-7), "seed"),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_server_stays_ready(raw, recommend_server, kwargs, message):
    with pytest.raises(InferenceServerException) as info:
        _raw_request(raw, **kwargs)
    assert message in str(info.value)
    if message in ("explore", "seed"):  # validated by the entry stage, before any lookup or model runs
        assert "candidates:" in str(info.value)
    assert raw.is_server_ready()
    ok = _raw_request(raw, [recommend_server.known_user_ids[0]], 5, [], 0.0)
    assert ok.as_numpy("item_ids").shape == (5,)


def test_typed_client_raises_invalid_input(client):
    with pytest.raises(InvalidInputError, match="top_k"):
        client.recommend(1, k=0)


def test_http_json_request(recommend_server):
    user = recommend_server.known_user_ids[3]
    body = {"inputs": [
        {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]},
        {"name": "top_k", "datatype": "INT32", "shape": [1], "data": [5]},
        {"name": "exclude_item_ids", "datatype": "INT64", "shape": [0], "data": []},
        {"name": "explore", "datatype": "FP32", "shape": [1], "data": [0.0]},
    ]}
    request = urllib.request.Request(
        f"http://{recommend_server.http_url}/v2/models/recommend/infer", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = json.loads(response.read())
    outputs = {o["name"]: o for o in payload["outputs"]}
    assert outputs["item_ids"]["shape"] == [5]
    assert outputs["degraded"]["data"] == [False]
    body["inputs"][1]["data"] = [0]
    bad = urllib.request.Request(
        f"http://{recommend_server.http_url}/v2/models/recommend/infer", data=json.dumps(body).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=10)
    assert info.value.code == 400 and "top_k" in info.value.read().decode()


def test_served_answers_equal_the_in_process_pipeline(client, recommend_server, sample_users):
    from cascade.online.pipeline import InProcessRecommender

    offline = InProcessRecommender.load(recommend_server.export_root)
    for user in sample_users + [987_654_321]:
        served = client.recommend(user, k=10)
        local = offline.recommend(user, top_k=10)
        assert served.item_ids == local.item_ids.tolist(), user
        np.testing.assert_allclose(served.scores, local.scores, rtol=1e-5, atol=1e-5)
        assert served.degraded == local.degraded


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_business_and_stage_error_metrics(raw, client, recommend_server, sample_users):
    before = _metrics(recommend_server.metrics_url)
    client.recommend(sample_users[0], k=10)
    client.recommend(987_654_321, k=10)
    with pytest.raises(InferenceServerException):
        _raw_request(raw, [1], 0, [], 0.0)
    # business counters are buffered in the stub and flushed every METRIC_FLUSH_SECONDS (0.2 s)
    deadline = time.monotonic() + 5
    while True:
        after = _metrics(recommend_server.metrics_url)
        grew = (_counter(after, "cascade_candidates_retrieved_total") > _counter(before, "cascade_candidates_retrieved_total")
                and _counter(after, "cascade_cold_start_total") >= _counter(before, "cascade_cold_start_total") + 1
                and _counter(after, "cascade_degraded_total", reason="cold_start")
                >= _counter(before, "cascade_degraded_total", reason="cold_start") + 1)
        if grew or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _counter(after, "cascade_candidates_retrieved_total") > _counter(before, "cascade_candidates_retrieved_total")
    assert _counter(after, "cascade_cold_start_total") >= _counter(before, "cascade_cold_start_total") + 1
    assert _counter(after, "cascade_degraded_total", reason="cold_start") >= \
        _counter(before, "cascade_degraded_total", reason="cold_start") + 1
    assert any(line.startswith("cascade_degraded_total{") and 'reason="circuit_open"' in line
               for line in after.splitlines())  # every reason is exported from the start (at 0)
    assert _counter(after, "cascade_stage_errors_total", stage="candidates", code="INVALID_ARG") >= \
        _counter(before, "cascade_stage_errors_total", stage="candidates", code="INVALID_ARG") + 1
    assert 'nv_inference_request_success{model="candidates"' in after


PHASES = {"candidates": ("validate", "feast", "user_encode", "query_tower", "retrieval"),
          "ranking": ("item_features", "ranking", "business_logic")}


def test_merged_models_report_each_phase_in_a_histogram(client, recommend_server, sample_users):
    """Feast lookup, retrieval, ranking and the business logic stay observable inside the merged
    models: cascade_phase_seconds{model, phase} is a Prometheus histogram (Python backend metrics
    API, HISTOGRAM kind, on the bundled 2.51 binary) that counts every execution of each phase."""
    def counts(text: str) -> dict[tuple[str, str], float]:
        return {(m, p): _counter(text, "cascade_phase_seconds_count", model=m, phase=p)
                for m, phases in PHASES.items() for p in phases}

    before = counts(_metrics(recommend_server.metrics_url))
    for user in sample_users[:3]:
        client.recommend(user, k=5)
    deadline = time.monotonic() + 5
    while True:
        text = _metrics(recommend_server.metrics_url)
        after = counts(text)
        if all(after[k] >= before[k] + 1 for k in after) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(after[k] >= before[k] + 1 for k in after), {k: after[k] - before[k] for k in after}
    assert 'cascade_phase_seconds_bucket{model="ranking",phase="ranking",le="0.001"}' in text.replace(
        'le="0.001000"', 'le="0.001"')
    assert _counter(text, "cascade_phase_seconds_sum", model="ranking", phase="ranking") > 0


def test_newer_item_snapshot_is_picked_up_without_restart(client, recommend_server, sample_users):
    from cascade.features.store import materialize

    user = sample_users[2]
    before = client.recommend(user, k=5).model_version
    materialize(recommend_server.export_root / "feature_repo")
    deadline = time.monotonic() + 15
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.5)
        after = client.recommend(user, k=5).model_version
    assert after != before
    assert after.split("+items.")[0] == before.split("+items.")[0]


def test_a_broken_item_snapshot_is_rejected_and_the_old_one_keeps_serving(client, recommend_server, sample_users):
    """A published snapshot that cannot be loaded is rejected by the ranking model's background
    refresh: counted in cascade_snapshot_refresh_failures_total, and answers keep coming from the
    snapshot already in memory (same model_version)."""
    import shutil

    from cascade.features.repo import SNAPSHOT_DIR
    from cascade.features.snapshot import latest_version

    repo = recommend_server.export_root / "feature_repo"
    user = sample_users[3]
    serving = client.recommend(user, k=5)
    good = latest_version(repo)
    before = _counter(_metrics(recommend_server.metrics_url), "cascade_snapshot_refresh_failures_total")
    broken = repo / SNAPSHOT_DIR / "99991231T000000000000Z-deadbeef"  # sorts after every real version
    broken.mkdir()
    try:
        (broken / "items.parquet").write_bytes(b"not a parquet file")
        (broken / "meta.json").write_text('{"version": "%s"}' % broken.name)
        (repo / SNAPSHOT_DIR / "LATEST").write_text(broken.name + "\n")
        deadline = time.monotonic() + 15
        failures = before
        while failures < before + 1 and time.monotonic() < deadline:
            time.sleep(0.3)
            failures = _counter(_metrics(recommend_server.metrics_url), "cascade_snapshot_refresh_failures_total")
        assert failures >= before + 1
        after = client.recommend(user, k=5)
        assert after.model_version == serving.model_version and after.item_ids == serving.item_ids
    finally:
        (repo / SNAPSHOT_DIR / "LATEST").write_text(good + "\n")
        shutil.rmtree(broken, ignore_errors=True)


def _counts(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"]
    return (sum(int(m.get("inference_count", 0)) for m in stats), sum(int(m.get("execution_count", 0)) for m in stats))


def test_concurrent_requests_batched_by_the_stages_get_their_own_answers(raw, recommend_server, sample_users):
    """Under concurrent load every stage batches requests (dynamic batching, one vectorised
    ONNX Runtime / Feast call per batch): each answer must equal the one the same request gets
    alone, and a bad request inside a batch fails alone with its own error."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    users = list(sample_users)[:12] + [987_654_321]  # + one cold-start user
    with RecommendClient(recommend_server.grpc_url) as c:
        alone = {u: c.recommend(u, k=10) for u in users}
    local = threading.local()
    opened: list = []

    def one(i: int):
        if not hasattr(local, "raw"):
            local.raw = grpcclient.InferenceServerClient(recommend_server.grpc_url)
            local.client = RecommendClient(recommend_server.grpc_url)
            opened.extend([local.raw, local.client])
        user = users[i % len(users)]
        if i % 7 == 3:  # a bad request among the good ones
            with pytest.raises(InferenceServerException, match="exclude_item_ids"):
                _raw_request(local.raw, [user], 10, [-5], 0.0)
            return None
        return user, local.client.recommend(user, k=10)

    stages = ("candidates", "ranking")
    before = {m: _counts(raw, m) for m in stages}
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = [a for a in pool.map(one, range(224)) if a is not None]
    finally:
        for c in opened:
            c.close()
    after = {m: _counts(raw, m) for m in stages}
    assert len(answers) == 224 - len([i for i in range(224) if i % 7 == 3])
    for user, got in answers:
        want = alone[user]
        assert got.item_ids == want.item_ids, user
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        assert got.degraded == want.degraded and got.model_version == want.model_version
    batched = {m: (after[m][0] - before[m][0], after[m][1] - before[m][1]) for m in stages}  # (requests, executions)
    assert any(requests > executions for requests, executions in batched.values()), batched
    assert raw.is_server_ready()
