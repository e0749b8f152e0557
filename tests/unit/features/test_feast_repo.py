"""Feature repo generation, real Feast apply/materialize (SQLite), online reads and the item snapshot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_dataset import ITEM_IDS, T0, write_tiny_dataset  # noqa: E402

from cascade.errors import InvalidInputError, NotFoundError, SchemaError  # noqa: E402
from cascade.features.cli import app  # noqa: E402
from cascade.features.online import UserFeatureReader  # noqa: E402
from cascade.features.repo import FeatureRepo, generate_feature_repo  # noqa: E402
from cascade.features.schema import feast_column  # noqa: E402
from cascade.features.snapshot import ItemSnapshot  # noqa: E402
from cascade.features.store import apply, materialize  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feast") / "tiny"
    write_tiny_dataset(path)
    return path


@pytest.fixture(scope="module")
def repo(dataset: Path) -> Path:
    repo_dir = dataset.parent / "repo"
    generate_feature_repo(dataset, repo_dir)
    apply(repo_dir)
    materialize(repo_dir)
    return repo_dir


@pytest.fixture(scope="module")
def reader(repo: Path) -> UserFeatureReader:
    return UserFeatureReader(repo)


def test_generated_repo_layout_and_types(repo: Path) -> None:
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    assert config["project"] == "cascade" and config["provider"] == "local"
    assert config["online_store"] == {"type": "sqlite", "path": "data/online.db"}
    assert config["registry"]["path"] == "data/registry.db"
    meta = FeatureRepo.load(repo)
    assert meta.feature_timestamp == T0 + 9  # max TRAIN timestamp (test goes to T0 + 11)
    assert meta.user.feast_types == {
        "age_bucket": "String", "country": "String", "activity": "Float64",
        "recent_items": "Array(Int64)", "seen_items": "Array(Int64)", "n_interactions": "Int64",
    }
    assert meta.item.feast_types == {
        "title": "String", "category": "String", "genres": "Array(String)", "price": "Float64",
        "first_seen": "Int64", "available": "Bool",
    }
    source = pq.read_table(repo / "data/user_features.parquet")
    assert source.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert (repo / "data/online.db").is_file()


def test_registry_holds_both_views(repo: Path) -> None:
    from cascade.features.store import open_store

    store = open_store(repo)
    views = {v.name: v for v in store.list_feature_views()}
    assert set(views) == {"user_features", "item_features"}
    assert [e.name for e in views["item_features"].entity_columns] == ["item_id"]
    assert store.get_entity("user").join_key == "user_id"


def test_user_features_hand_checked(reader: UserFeatureReader) -> None:
    one = reader.get(1)
    assert one.known
    # train of user 1: 10, 20, 10, 30 (oldest first) -> most recent first, repeats once
    np.testing.assert_array_equal(one.recent_items, [30, 10, 20])
    np.testing.assert_array_equal(one.seen_items, [10, 20, 30])  # 40 is in TEST only
    assert one.recent_items.dtype == np.int64 and one.seen_items.dtype == np.int64
    assert one.n_interactions == 4
    assert one.attributes == {"age_bucket": "18-24", "country": "DE", "activity": 0.5}
    two = reader.get(2)
    np.testing.assert_array_equal(two.recent_items, [40, 50])
    assert two.n_interactions == 2


def test_known_user_without_train_history(reader: UserFeatureReader) -> None:
    three = reader.get(3)  # in users.parquet, only a test interaction
    assert three.known and three.n_interactions == 0
    assert three.recent_items.size == 0 and three.seen_items.size == 0
    assert three.attributes["country"] == "FR" and three.attributes["age_bucket"] is None


@pytest.mark.parametrize("user_id", [4, 999_999, -1])
def test_unknown_user_gets_cold_start_flag(reader: UserFeatureReader, user_id: int) -> None:
    features = reader.get(user_id)
    assert not features.known
    assert features.n_interactions == 0
    assert features.recent_items.dtype == np.int64 and features.recent_items.size == 0
    assert features.seen_items.size == 0
    assert features.attributes == {"age_bucket": None, "country": None, "activity": None}


def test_get_many_keeps_request_order(reader: UserFeatureReader) -> None:
    batch = reader.get_many([2, 4, 1, 2])
    assert len(batch) == 4
    np.testing.assert_array_equal(batch.known, [True, False, True, True])
    np.testing.assert_array_equal(batch.columns["n_interactions"], [2, 0, 4, 2])
    np.testing.assert_array_equal(batch.columns["recent_items"][2], [30, 10, 20])
    assert batch.columns["recent_items"][1].size == 0
    assert list(batch.columns["country"]) == ["US", None, "DE", "US"]
    assert np.isnan(batch.columns["activity"][1]) and batch.columns["activity"][0] == 1.5
    assert batch[2].user_id == 1 and batch[2].attributes["country"] == "DE"
    assert len(reader.get_many([])) == 0


@pytest.mark.parametrize("bad", ["1", 1.0, True, None])
def test_bad_user_id_is_rejected(reader: UserFeatureReader, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="user_id"):
        reader.get(bad)  # type: ignore[arg-type]


def test_snapshot_is_in_catalog_order(repo: Path, dataset: Path) -> None:
    snapshot = ItemSnapshot.load_latest(repo)
    items = pq.read_table(dataset / "items.parquet").to_pydict()
    np.testing.assert_array_equal(snapshot.item_ids, ITEM_IDS)
    assert snapshot.item_ids.dtype == np.int64
    assert set(snapshot.columns) == {"item_id", "title", "category", "genres", "price", "first_seen", "available"}
    assert list(snapshot.columns["title"]) == items["title"]
    assert list(snapshot.columns["category"]) == items["category"]
    np.testing.assert_array_equal(snapshot.columns["available"], items["available"])
    assert snapshot.columns["available"].dtype == bool
    assert [list(g) for g in snapshot.columns["genres"]] == [g or [] for g in items["genres"]]
    assert snapshot.list_columns == ("genres",)
    assert (repo / "item_snapshot" / snapshot.version / "items.parquet").is_file()


def test_snapshot_gather_and_rows_for(repo: Path) -> None:
    snapshot = ItemSnapshot.load_latest(repo)
    rows = snapshot.rows_for(np.array([20, 30, 777, 60, -5], dtype=np.int64))
    np.testing.assert_array_equal(rows, [3, 0, -1, 5, -1])
    gathered = snapshot.gather(np.array([3, 0, 3]))
    np.testing.assert_array_equal(gathered["item_id"], [20, 30, 20])
    np.testing.assert_array_equal(gathered["first_seen"], [T0 - 20, T0 - 30, T0 - 20])
    assert np.isnan(gathered["price"][0]) and gathered["price"][1] == 1.0
    assert list(gathered["genres"][0]) == ["Action"]
    only = snapshot.gather(np.array([1]), columns=["available"])
    assert list(only) == ["available"]
    with pytest.raises(InvalidInputError, match="rows_for"):
        snapshot.gather(rows)  # contains -1
    assert snapshot.gather(np.array([], dtype=np.int64))["item_id"].size == 0


def test_second_materialize_publishes_newer_version(repo: Path) -> None:
    first = ItemSnapshot.load_latest(repo).version
    assert ItemSnapshot.newer_available(repo, first) is None
    skipped = materialize(repo, skip_if_fresh=True)
    assert skipped.skipped and skipped.snapshot_version == first
    again = materialize(repo)
    assert not again.skipped and again.snapshot_version > first
    assert again.rows == {"user_features": 4, "item_features": 6}
    assert ItemSnapshot.newer_available(repo, first) == again.snapshot_version
    assert ItemSnapshot.newer_available(repo, again.snapshot_version) is None
    assert ItemSnapshot.newer_available(repo, None) == again.snapshot_version
    assert ItemSnapshot.load_latest(repo).version == again.snapshot_version


def test_generate_is_cached_by_input_hash(repo: Path, dataset: Path) -> None:
    before = (repo / "_cascade_step.json").stat().st_mtime_ns
    generate_feature_repo(dataset, repo)
    assert (repo / "_cascade_step.json").stat().st_mtime_ns == before
    assert (repo / "data/online.db").is_file()  # nothing was wiped
    assert apply(repo, skip_if_fresh=True).skipped


REDIS = "my-cache.abc123.use1.cache.amazonaws.com:6379,ssl=true,password=${REDIS_PASSWORD}"


def test_redis_config_is_generated(dataset: Path, tmp_path: Path) -> None:
    connection = REDIS
    repo = generate_feature_repo(dataset, tmp_path / "r", online_store="redis", redis_connection=connection)
    config = yaml.safe_load(repo.feature_store_yaml.read_text())
    assert config["online_store"] == {"type": "redis", "redis_type": "redis", "connection_string": connection}
    assert FeatureRepo.load(tmp_path / "r").online_store == "redis"
    assert config["registry"]["path"] == "data/registry.db" and "path" not in config["online_store"]
    cluster = generate_feature_repo(dataset, tmp_path / "c", online_store="redis",
                                    redis_connection="clustercfg.x.use1.cache.amazonaws.com:6379,ssl=true")
    assert yaml.safe_load(cluster.feature_store_yaml.read_text())["online_store"]["redis_type"] == "redis_cluster"


def test_redis_config_parses_in_feast(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis", reason="Feast's Redis store needs the redis client (feast[redis])")
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    repo = generate_feature_repo(dataset, tmp_path / "r", online_store="redis", redis_connection=REDIS)
    parsed = load_repo_config(repo.root, repo.feature_store_yaml)  # no server needed
    assert parsed.online_store.type == "redis"
    assert parsed.online_store.connection_string.endswith("password=s3cret")


@pytest.mark.parametrize(
    ("store", "connection", "message"),
    [("redis", None, "--redis-connection is required"), ("redis", "no-port", "host:port"),
     ("sqlite", "h:1", "only valid"), ("dynamo", None, "--online-store")],
)
def test_bad_online_store_settings(dataset: Path, tmp_path: Path, store: str, connection, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        generate_feature_repo(dataset, tmp_path / "r", online_store=store, redis_connection=connection)  # type: ignore[arg-type]


def test_generate_refuses_foreign_folder(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not a cascade feature repo"):
        generate_feature_repo(dataset, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_missing_repo_and_snapshot_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="cascade_repo.json"):
        apply(tmp_path)
    with pytest.raises(NotFoundError, match="materialize"):
        ItemSnapshot.load_latest(tmp_path)


def test_column_type_mapping() -> None:
    assert feast_column("t", "timestamp", pa.timestamp("ms")).feast_type == "Int64"
    assert feast_column("n", "categorical", pa.int16()).feast_type == "Int32"
    assert feast_column("g", "list_categorical", pa.large_list(pa.int64())).feast_type == "Array(Int64)"
    assert feast_column("d", "categorical", pa.dictionary(pa.int32(), pa.string())).feast_type == "String"
    with pytest.raises(SchemaError, match="'m'"):
        feast_column("m", "continuous", pa.map_(pa.string(), pa.int64()))


def test_cli(repo: Path, dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["materialize", "--repo", str(repo)])
    assert ok.exit_code == 0, ok.output
    assert "user_features: 4 rows" in ok.output and "item snapshot: version" in ok.output
    gen = runner.invoke(app, ["generate", "--data", str(dataset), "--repo", str(repo)])
    assert gen.exit_code == 0 and "4 users" in gen.output
    bad = runner.invoke(app, ["generate", "--data", str(tmp_path / "nope"), "--repo", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "dataset.json is missing" in bad.stderr
    bad = runner.invoke(app, ["apply", "--repo", str(tmp_path)])
    assert bad.exit_code == 2 and "not a cascade feature repo" in bad.stderr
