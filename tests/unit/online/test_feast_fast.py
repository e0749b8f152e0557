"""The lean Feast online-store reader answers exactly what the SDK reader answers (real Feast,
SQLite), for known users, users without history and unknown users."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "features"))
from tiny_dataset import write_tiny_dataset  # noqa: E402

from cascade.features.repo import generate_feature_repo  # noqa: E402
from cascade.features.store import apply, materialize  # noqa: E402
from cascade.online.feast_fast import OnlineUserReader  # noqa: E402


@pytest.fixture(scope="module")
def repo_and_users(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("feast_fast") / "tiny"
    write_tiny_dataset(path)
    repo_dir = path.parent / "repo"
    generate_feature_repo(path, repo_dir)
    apply(repo_dir)
    materialize(repo_dir)
    users = pq.read_table(path / "users.parquet", columns=["user_id"]).column("user_id").to_pylist()
    return repo_dir, users


def test_registry_is_cached_forever(repo_and_users) -> None:
    repo_dir, _ = repo_and_users
    assert "cache_ttl_seconds: 0" in (repo_dir / "feature_store.yaml").read_text()


def test_online_read_matches_the_sdk(repo_and_users) -> None:
    repo_dir, users = repo_and_users
    reader = OnlineUserReader(repo_dir)
    for user_id in [*users, 10**12, 0]:
        fast, sdk = reader.get(user_id), reader.sdk.get(user_id)
        assert fast.known == sdk.known and fast.user_id == sdk.user_id
        assert fast.attributes == sdk.attributes
        assert fast.n_interactions == sdk.n_interactions
        np.testing.assert_array_equal(fast.recent_items, sdk.recent_items)
        np.testing.assert_array_equal(fast.seen_items, sdk.seen_items)
        assert fast.recent_items.dtype == np.int64 and fast.seen_items.dtype == np.int64


def test_a_batch_of_users_encodes_like_each_user_alone(tmp_path: Path) -> None:
    """The batching user_features stage reads and encodes B users at once (one store read, one
    workflow transform): each user's rows must equal that user's lone lookup, known or not."""
    from cascade.online.stages import UserFeatureStage
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate

    generate(tmp_path / "data", SyntheticConfig(n_users=30, n_items=40, n_interactions=500, n_categories=3,
                                                n_brands=4, seed=3), name="batch", progress=False)
    workflow = fit_workflow(tmp_path / "data", tmp_path / "workflow", progress=False)
    generate_feature_repo(tmp_path / "data", tmp_path / "repo")
    apply(tmp_path / "repo")
    materialize(tmp_path / "repo")
    users = pq.read_table(tmp_path / "data" / "users.parquet", columns=["user_id"]).column("user_id").to_pylist()
    ids = [*users[:4], 10**12, users[0], 0, *users[-2:]]
    for reader in ("online_read", "sdk"):
        stage = UserFeatureStage(tmp_path / "repo", workflow, reader=reader)
        batch = stage.lookup_many(ids)
        assert len(batch) == len(ids)
        for uid, got in zip(ids, batch):
            alone = stage.lookup(uid)
            assert got.cold_start == alone.cold_start and got.feature_store_error is None
            for name in ("cat", "cont", "lists", "seen_items"):
                np.testing.assert_array_equal(getattr(got, name), getattr(alone, name), err_msg=f"{reader} {uid} {name}")
            assert got.cat.shape[0] == 1
        assert batch[ids.index(10**12)].cold_start
        assert sum(not u.cold_start for u in batch) >= 4  # most sampled users are known
