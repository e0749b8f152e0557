"""`cascade data generate`: canonical layout, split sizes, determinism, learnable structure, oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cascade.errors import InvalidInputError, NotFoundError
from cascade.workflows.data_cli import app
from cascade.workflows.dataset import DatasetInfo, load_dataset
from cascade.workflows.synthetic import ORACLE_FILES, SyntheticConfig, generate, oracle_scores

SMALL = ["--users", "300", "--items", "400", "--interactions", "6000", "--categories", "5", "--brands", "20",
         "--no-progress"]


def _generate(out: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(out), *SMALL, *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "small"
    _generate(out, "--seed", "7")
    return out


def test_canonical_layout_and_dtypes(small: Path) -> None:
    paths, info = load_dataset(small)
    assert info.source == "synthetic" and info.has_oracle and info.name == "small"
    assert (info.n_users, info.n_items, info.n_train + info.n_test) == (300, 400, 6000)
    assert info.test_fraction == 0.2 and len(info.content_hash) == 64
    users, items = pd.read_parquet(paths.users), pd.read_parquet(paths.items)
    train, test = pd.read_parquet(paths.train), pd.read_parquet(paths.test)
    assert list(users.columns) == ["user_id", "age_bucket", "country", "activity"]
    assert list(items.columns) == ["item_id", "category", "brand", "price", "first_seen", "available"]
    for frame in (train, test):
        assert frame.dtypes.astype(str).to_dict() == {
            "user_id": "int64", "item_id": "int64", "timestamp": "int64", "weight": "float32"}
        assert (frame["weight"] == 1.0).all()
    assert items["available"].dtype == bool and items["first_seen"].dtype == np.int64
    assert (len(train), len(test)) == (info.n_train, info.n_test)
    assert users["user_id"].is_unique and items["item_id"].is_unique
    # raw ids are not dense 0..n-1
    assert users["user_id"].min() >= 1000 and items["item_id"].min() > len(items)
    assert set(train["item_id"]) | set(test["item_id"]) <= set(items["item_id"])
    assert set(train["user_id"]) | set(test["user_id"]) == set(users["user_id"])
    kinds = {c.name: c.kind for c in info.item_columns}
    assert kinds == {"item_id": "id", "category": "categorical", "brand": "categorical", "price": "continuous",
                     "first_seen": "timestamp", "available": "flag"}
    assert {c.name: c.kind for c in info.user_columns}["activity"] == "continuous"
    both = pd.concat([train, test])
    assert tuple(info.time_range) == (both["timestamp"].min(), both["timestamp"].max())
    assert json.loads((small / "dataset.json").read_text())["format_version"] == 1


def test_sorted_and_split_per_user_is_ceil(small: Path) -> None:
    train = pd.read_parquet(small / "train.parquet").assign(test=False)
    test = pd.read_parquet(small / "test.parquet").assign(test=True)
    for frame in (train, test):
        key = frame[["user_id", "timestamp"]].to_numpy()
        assert (np.diff(key[:, 0]) >= 0).all()
        same = np.diff(key[:, 0]) == 0
        assert (np.diff(key[:, 1])[same] >= 0).all()
    both = pd.concat([train, test]).sort_values(["user_id", "timestamp"], kind="stable")
    for user, rows in both.groupby("user_id"):
        n, k = len(rows), int(rows["test"].sum())
        assert k == max(1, math.ceil(round(0.2 * n, 9)))
        if n > k:
            assert rows["timestamp"].iloc[-k:].min() >= rows["timestamp"].iloc[: n - k].max()


def test_only_released_items_are_used(small: Path) -> None:
    items = pd.read_parquet(small / "items.parquet").set_index("item_id")
    both = pd.concat([pd.read_parquet(small / "train.parquet"), pd.read_parquet(small / "test.parquet")])
    assert (both["timestamp"].to_numpy() >= items.loc[both["item_id"], "first_seen"].to_numpy()).all()
    assert 0.0 < (~items["available"]).mean() < 0.1


def test_same_seed_same_files_other_seed_differs(tmp_path: Path, small: Path) -> None:
    _generate(tmp_path / "again", "--seed", "7")
    _generate(tmp_path / "other", "--seed", "8")
    same = DatasetInfo.load(tmp_path / "again").content_hash
    assert same == DatasetInfo.load(small).content_hash
    assert DatasetInfo.load(tmp_path / "other").content_hash != same


def test_zero_test_fraction_and_streamed_chunks(tmp_path: Path) -> None:
    config = SyntheticConfig(n_users=120, n_items=80, n_interactions=4000, n_categories=4, n_brands=8,
                             test_fraction=0.0, chunk_interactions=1000, seed=3)
    info = generate(tmp_path / "chunks", config, progress=False)
    assert (info.n_train, info.n_test) == (4000, 0)
    assert pq.ParquetFile(tmp_path / "chunks" / "train.parquet").metadata.num_row_groups >= 4
    assert pd.read_parquet(tmp_path / "chunks" / "test.parquet").empty
    train = pd.read_parquet(tmp_path / "chunks" / "train.parquet")
    assert train["user_id"].is_monotonic_increasing


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--test-fraction", "1"], "--test-fraction"), (["--users", "0"], "--users"),
     (["--interactions", "10"], "--interactions"), (["--brands", "2"], "--brands")],
)
def test_bad_arguments_exit_2_naming_the_flag(tmp_path: Path, args: list[str], flag: str) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "x"), *SMALL, *args])
    assert result.exit_code == 2
    assert flag in result.stderr
    assert not (tmp_path / "x").exists()


def test_oracle_scores_shape_order_and_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "learn"
    generate(out, SyntheticConfig(n_users=1500, n_items=1000, n_interactions=60_000, n_categories=8,
                                  n_brands=40, seed=5), progress=False)
    assert all((out / "oracle" / name).is_file() for name in ORACLE_FILES)
    items = pd.read_parquet(out / "items.parquet")
    assert np.array_equal(np.load(out / "oracle" / "item_ids.npy"), items["item_id"].to_numpy())
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    users = np.unique(test["user_id"])[::3]
    scores = oracle_scores(out, users)
    assert scores.dtype == np.float32 and scores.shape == (users.size, len(items))
    assert not np.isnan(scores).any()
    # scores for a permuted request follow the request order
    assert np.array_equal(oracle_scores(out, users[::-1][:5]), scores[::-1][:5])

    column = pd.Series(np.arange(len(items)), index=items["item_id"])
    popularity = np.bincount(column[train["item_id"]].to_numpy(), minlength=len(items)).astype(float)
    truth = test.groupby("user_id")["item_id"].apply(lambda s: set(column[s].tolist()))

    def recall(matrix: np.ndarray, k: int = 20) -> float:
        top = np.argpartition(-matrix, k, axis=1)[:, :k]
        return float(np.mean([len(truth[u] & set(top[i].tolist())) / min(len(truth[u]), k)
                              for i, u in enumerate(users)]))

    oracle, popular = recall(scores), recall(np.tile(popularity, (users.size, 1)))
    assert oracle > 2.0 * popular, (oracle, popular)


def test_oracle_unknown_user_and_missing_oracle(tmp_path: Path, small: Path) -> None:
    with pytest.raises(NotFoundError, match="not in the dataset"):
        oracle_scores(small, np.array([1]))
    with pytest.raises(NotFoundError, match="oracle"):
        oracle_scores(tmp_path, np.array([1000]))


def test_invalid_config_raises_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--test-fraction"):
        generate(tmp_path / "bad", SyntheticConfig(test_fraction=-0.5), progress=False)
    assert not (tmp_path / "bad").exists()


def test_global_time_split(tmp_path: Path, small: Path) -> None:
    out = tmp_path / "global"
    _generate(out, "--seed", "7", "--split", "global-time")
    paths, info = load_dataset(out)
    train, test = pd.read_parquet(paths.train), pd.read_parquet(paths.test)
    per_user = load_dataset(small)[1]
    assert info.split == "global-time" and info.split_time is not None and not info.has_oracle
    assert not (out / "oracle").exists()
    assert train["timestamp"].max() < info.split_time <= test["timestamp"].min()
    assert info.n_train + info.n_test == per_user.n_train + per_user.n_test  # the same interactions, cut once
    assert len(test) >= math.ceil(0.2 * (info.n_train + info.n_test))
    assert train["user_id"].is_monotonic_increasing
