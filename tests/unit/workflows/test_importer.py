"""`cascade data import`: generic CSV/Parquet import, the MovieLens preset, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cascade.errors import DataValidationError, SchemaError
from cascade.workflows import importer
from cascade.workflows.data_cli import app
from cascade.workflows.dataset import DatasetInfo, load_dataset


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cli(*args: str):
    return CliRunner().invoke(app, ["import", *args, "--no-progress"])


# --- MovieLens preset ---------------------------------------------------------------------------


@pytest.fixture()
def movielens(tmp_path: Path) -> tuple[Path, Path]:
    """A small ratings.csv/movies.csv pair generated with a seed (with the awkward MovieLens cases)."""
    rng = np.random.default_rng(11)
    n = 400
    ratings = pd.DataFrame({
        "userId": rng.integers(1, 31, size=n),
        "movieId": rng.choice([1, 2, 3, 5, 8, 13, 21, 34], size=n),
        "rating": rng.choice([0.5, 1.0, 2.5, 3.0, 4.5, 5.0], size=n),
        "timestamp": 1_500_000_000 + rng.integers(0, 10_000, size=n),
    })
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    _write(tmp_path / "movies.csv", (
        "movieId,title,genres\n"
        '1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Heat (1995),Action|Crime|Thriller\n"
        "5,Some Film (2001),(no genres listed)\n"
        "8,Tom and Huck (1995),Adventure|Children\n"
        "13,Balto (1995),Adventure|Animation|Children\n"
        "21,Get Shorty (1995),Comedy|Crime|Thriller\n"
        "34,Babe (1995),Children|Drama\n"
        "99,Never Rated (1999),Drama\n"
    ))
    return tmp_path / "ratings.csv", tmp_path / "movies.csv"


def test_movielens_preset_canonical_layout(tmp_path: Path, movielens) -> None:
    ratings_csv, movies_csv = movielens
    out = tmp_path / "ml"
    result = _cli("--preset", "movielens", "--ratings", str(ratings_csv), "--items", str(movies_csv), "--out", str(out))
    assert result.exit_code == 0, result.output
    paths, info = load_dataset(out)
    ratings = pd.read_csv(ratings_csv)
    deduped = ratings.drop_duplicates(["userId", "movieId", "timestamp"])
    assert info.source == "movielens" and not info.has_oracle
    assert info.params["duplicates_dropped"] == len(ratings) - len(deduped)
    assert info.n_train + info.n_test == len(deduped)
    assert info.n_users == ratings["userId"].nunique() and info.n_items == 9  # never-rated movie kept
    items = pd.read_parquet(paths.items).set_index("item_id")
    assert list(items.columns) == ["title", "category", "genres", "first_seen", "available"]
    assert items.loc[2, "title"] == "American President, The (1995)"
    assert items.loc[1, "category"] == "Adventure"
    assert list(items.loc[1, "genres"]) == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert items.loc[5, "category"] is None and len(items.loc[5, "genres"]) == 0
    assert pd.isna(items.loc[99, "first_seen"]) and items["available"].all()
    train, test = pd.read_parquet(paths.train), pd.read_parquet(paths.test)
    # no leak: first_seen is the first TRAIN rating, never a test one
    first = train.groupby("item_id")["timestamp"].min()
    assert items.loc[first.index, "first_seen"].astype(np.int64).tolist() == first.tolist()
    only_test = sorted(set(test["item_id"]) - set(train["item_id"]))
    assert items.loc[only_test, "first_seen"].isna().all() if only_test else True
    kinds = {c.name: c.kind for c in info.item_columns}
    assert kinds == {"item_id": "id", "title": "text", "category": "categorical", "genres": "list_categorical",
                     "first_seen": "timestamp", "available": "flag"}
    assert [c.name for c in info.user_columns] == ["user_id"]
    assert info.split == "per-user" and info.split_time is None
    assert train.dtypes.astype(str).tolist() == ["int64", "int64", "int64", "float32"]
    assert set(train["weight"]) | set(test["weight"]) <= {0.5, 1.0, 2.5, 3.0, 4.5, 5.0}
    counts = pd.concat([train, test]).groupby("user_id").size()
    test_counts = test.groupby("user_id").size().reindex(counts.index, fill_value=0)
    assert (test_counts == counts.map(lambda n: max(1, math.ceil(round(0.2 * n, 9))))).all()


def test_movielens_needs_ratings(tmp_path: Path, movielens) -> None:
    result = _cli("--preset", "movielens", "--items", str(movielens[1]), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "--ratings" in result.stderr


def test_movielens_missing_column_names_preset(tmp_path: Path, movielens) -> None:
    bad = _write(tmp_path / "movies_bad.csv", "movieId,name\n1,x\n")
    result = _cli("--preset", "movielens", "--ratings", str(movielens[0]), "--items", str(bad), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "movies_bad.csv" in result.stderr and "'title'" in result.stderr and "movieId, name" in result.stderr


# --- generic import -----------------------------------------------------------------------------


INTERACTIONS = (
    "user,item,timestamp,w\n"
    "5,100,2024-01-01T00:00:00Z,1.0\n"
    "5,200,2024-01-02T00:00:00Z,2.0\n"
    "5,100,2024-01-01T00:00:00Z,9.0\n"  # exact (user, item, timestamp) duplicate: dropped, first kept
    "5,100,2024-01-03T00:00:00Z,1.0\n"  # repeat at another time: kept
    "7,300,2024-01-01T12:00:00+02:00,0.0\n"
    "7,100,2024-01-01T12:00:00+02:00,1.0\n"
)


def test_generic_import_with_attribute_tables(tmp_path: Path) -> None:
    inter = _write(tmp_path / "events.csv", INTERACTIONS)
    users = _write(tmp_path / "users.csv", "user,country,vip,age\n5,DE,true,31\n99,FR,false,40\n")
    items = pd.DataFrame({
        "item": [100, 400], "price": [9.5, 3.0], "tags": [["a", "b"], []], "category": ["x", "y"],
        "available": [False, None],
    })
    items.to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "ds"
    result = _cli("--interactions", str(inter), "--users", str(users), "--items", str(tmp_path / "items.parquet"),
                  "--weight-col", "w", "--time-format", "iso", "--test-fraction", "0.5", "--name", "events",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    paths, info = load_dataset(out)
    assert info.name == "events" and info.source == "import" and info.params["duplicates_dropped"] == 1
    users_df = pd.read_parquet(paths.users)
    assert users_df["user_id"].tolist() == [5, 7]  # 99 never interacted: dropped
    assert users_df.set_index("user_id").loc[7].isna().all()
    items_df = pd.read_parquet(paths.items).set_index("item_id")
    # catalog = train items + the item table: 400 (table) kept; 200 is only in test (unknown at
    # training time), so it is not in the catalog and its test row is dropped and counted
    assert items_df.index.tolist() == [100, 300, 400]
    assert info.params["test_rows_unknown_item"] == 1
    assert items_df["available"].tolist() == [False, True, True]
    assert pd.isna(items_df.loc[300, "price"])
    kinds = {(c.name): c.kind for c in info.item_columns}
    assert kinds == {"item_id": "id", "price": "continuous", "tags": "list_categorical", "category": "categorical",
                     "available": "flag"}
    assert {c.name: c.kind for c in info.user_columns} == {
        "user_id": "id", "country": "categorical", "vip": "categorical", "age": "categorical"}
    train, test = pd.read_parquet(paths.train), pd.read_parquet(paths.test)
    both = pd.concat([train, test])
    assert len(both) == 4
    user5 = both[both.user_id == 5]
    assert user5["weight"].tolist() == [1.0, 1.0]  # duplicate weight 9.0 not kept nor summed
    assert train[train.user_id == 5]["item_id"].tolist() == [100]
    assert test[test.user_id == 5]["item_id"].tolist() == [100]
    # +02:00 converted to UTC; tie at the same timestamp keeps input order (300 then 100)
    assert test[test.user_id == 7]["item_id"].tolist() == [100]
    assert train[train.user_id == 7]["item_id"].tolist() == [300]
    assert train[train.user_id == 7]["timestamp"].iloc[0] == 1704103200


def test_parquet_unix_import_zero_fraction(tmp_path: Path) -> None:
    frame = pd.DataFrame({"u": [3, 1, 3], "i": [10, 10, 11], "t": [30.7, 20.0, 10.0]})
    frame.to_parquet(tmp_path / "x.parquet")
    info = importer.import_interactions(tmp_path / "ds", tmp_path / "x.parquet", user_col="u", item_col="i",
                                        time_col="t", test_fraction=0.0, progress=False)
    assert (info.n_train, info.n_test) == (3, 0)
    train = pd.read_parquet(tmp_path / "ds" / "train.parquet")
    assert train[["user_id", "item_id", "timestamp"]].values.tolist() == [[1, 10, 20], [3, 11, 10], [3, 10, 30]]
    assert train["weight"].tolist() == [1.0, 1.0, 1.0]
    assert pd.read_parquet(tmp_path / "ds" / "test.parquet").columns.tolist() == ["user_id", "item_id", "timestamp", "weight"]


# --- bad input: each message names file, row and column -----------------------------------------


def _import_error(tmp_path: Path, name: str, text: str, *extra: str) -> str:
    path = _write(tmp_path / name, text)
    result = _cli("--interactions", str(path), "--out", str(tmp_path / "out"), *extra)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()
    return result.stderr


def test_missing_column(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "a.csv", "user,itm,timestamp\n1,2,3\n")
    assert "a.csv" in err and "'item'" in err and "--item-col" in err and "columns found: user, itm, timestamp" in err


def test_non_numeric_id(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "b.csv", "user,item,timestamp\n1,2,3\n4,x7,5\n")
    assert "b.csv: row 2 (line 3), column 'item': 'x7' is not a numeric id" in err


def test_non_integral_id_in_parquet(tmp_path: Path) -> None:
    pd.DataFrame({"user": [1.0, 2.5], "item": [1, 2], "timestamp": [1, 2]}).to_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataValidationError, match=r"f\.parquet: row 2, column 'user': 2\.5 is not a numeric id"):
        importer.read_interactions(tmp_path / "f.parquet", "user", "item", "timestamp")


def test_missing_id(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "m.csv", "user,item,timestamp\n1,2,3\n,2,5\n")
    assert "m.csv: row 2 (line 3), column 'user': id is missing" in err


def test_null_timestamp(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "c.csv", "user,item,timestamp\n1,2,3\n1,3,\n")
    assert "c.csv: row 2 (line 3), column 'timestamp': timestamp is null" in err


def test_unparseable_iso_timestamp(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "d.csv", "user,item,ts\n1,2,2024-01-01\n1,3,yesterday\n", "--time-col", "ts")
    assert "d.csv: row 2 (line 3), column 'ts': timestamp 'yesterday' cannot be parsed" in err


def test_unparseable_unix_timestamp(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "e.csv", "user,item,timestamp\n1,2,10\n1,3,soon\n", "--time-format", "unix")
    assert "e.csv: row 2 (line 3), column 'timestamp': timestamp 'soon' cannot be parsed (expected unix seconds" in err


def test_negative_weight(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "g.csv", "user,item,timestamp,r\n1,2,3,1\n1,3,4,2\n1,4,5,-1.5\n", "--weight-col", "r")
    assert "g.csv: row 3 (line 4), column 'r': weight -1.5 is negative (expected a number >= 0)" in err


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    assert "h.csv: file is empty" in _import_error(tmp_path, "h.csv", "")
    assert "i.csv: file has no data rows" in _import_error(tmp_path, "i.csv", "user,item,timestamp\n")


def test_unknown_extension(tmp_path: Path) -> None:
    err = _import_error(tmp_path, "j.txt", "user,item,timestamp\n1,2,3\n")
    assert "j.txt: unknown file extension '.txt'" in err and ".csv" in err and ".parquet" in err


def test_duplicate_attribute_id(tmp_path: Path) -> None:
    inter = _write(tmp_path / "k.csv", "user,item,timestamp\n1,2,3\n")
    items = _write(tmp_path / "items.csv", "item,color\n2,red\n3,blue\n2,green\n")
    result = _cli("--interactions", str(inter), "--items", str(items), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "items.csv: row 3 (line 4), column 'item': id 2 repeats row 1 (line 2)" in result.stderr


def test_missing_attribute_id_column(tmp_path: Path) -> None:
    _write(tmp_path / "u.csv", "uid,x\n1,2\n")
    _write(tmp_path / "k.csv", "user,item,timestamp\n1,2,3\n")
    with pytest.raises(SchemaError, match=r"u\.csv: column 'user' \(set by --users-id-col\) not found; columns found: uid, x"):
        importer.import_interactions(tmp_path / "o", tmp_path / "k.csv", users=tmp_path / "u.csv", progress=False)


# --- atomicity ----------------------------------------------------------------------------------


def test_failed_import_keeps_existing_dataset(tmp_path: Path, monkeypatch) -> None:
    good = _write(tmp_path / "good.csv", "user,item,timestamp\n1,2,3\n1,3,4\n2,2,5\n")
    out = tmp_path / "ds"
    assert _cli("--interactions", str(good), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    bad = _write(tmp_path / "bad.csv", "user,item,timestamp\n1,2,3\n1,oops,4\n")
    result = _cli("--interactions", str(bad), "--out", str(out))
    assert result.exit_code == 2 and "oops" in result.stderr

    # a failure while the tables are being written (after the temporary folder exists)
    calls = {"n": 0}
    real = importer.write_parquet

    def failing(table, path, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise DataValidationError("disk full (simulated)")
        return real(table, path, **kw)

    monkeypatch.setattr(importer, "write_parquet", failing)
    result = _cli("--interactions", str(good), "--out", str(out), "--test-fraction", "0.5")
    assert result.exit_code == 2 and "disk full" in result.stderr

    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert DatasetInfo.load(out).test_fraction == 0.2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "ds", "good.csv"]  # no temp leftovers


def test_global_time_split_cuts_everyone_at_one_time(tmp_path: Path, movielens) -> None:
    ratings_csv, movies_csv = movielens
    out = tmp_path / "ml-global"
    result = _cli("--preset", "movielens", "--ratings", str(ratings_csv), "--items", str(movies_csv),
                  "--split", "global-time", "--test-fraction", "0.25", "--out", str(out))
    assert result.exit_code == 0, result.output
    paths, info = load_dataset(out)
    train, test = pd.read_parquet(paths.train), pd.read_parquet(paths.test)
    cut = info.split_time
    assert info.split == "global-time" and cut is not None
    assert train["timestamp"].max() < cut <= test["timestamp"].min()
    deduped = pd.read_csv(ratings_csv).drop_duplicates(["userId", "movieId", "timestamp"])
    assert info.n_train + info.n_test + info.params["test_rows_unknown_item"] == len(deduped)
    assert len(test) + info.params["test_rows_unknown_item"] >= math.ceil(0.25 * len(deduped))
    items = pd.read_parquet(paths.items).set_index("item_id")
    first = train.groupby("item_id")["timestamp"].min()
    assert (items.loc[first.index, "first_seen"].astype(np.int64) < cut).all()


def test_bad_split_names_the_flag(tmp_path: Path, movielens) -> None:
    ratings_csv, movies_csv = movielens
    result = _cli("--preset", "movielens", "--ratings", str(ratings_csv), "--items", str(movies_csv),
                  "--split", "random", "--out", str(tmp_path / "x"))
    assert result.exit_code != 0 and "--split" in result.output


def test_movielens_first_seen_never_looks_at_test_ratings(tmp_path: Path) -> None:
    # user 1: 1@100, 3@150 train | 2@200, 4@250 test; user 2: 2@10 train | 3@20 test.
    # Movie 3's first rating overall is user 2's TEST rating at t=20; its first train rating is 150.
    ratings = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
                     "1,1,4,100\n1,3,4,150\n1,2,4,200\n1,4,4,250\n2,2,3,10\n2,3,3,20\n")
    movies = _write(tmp_path / "movies.csv", "movieId,title,genres\n1,A,Drama\n2,B,Drama\n3,C,Drama\n4,D,Drama\n")
    info = importer.import_movielens(tmp_path / "ml", ratings, movies, test_fraction=0.5, progress=False)
    items = pd.read_parquet(tmp_path / "ml" / "items.parquet").set_index("item_id")
    assert items.loc[3, "first_seen"] == 150  # not 20 (a test rating)
    assert items.loc[2, "first_seen"] == 10 and items.loc[1, "first_seen"] == 100
    assert pd.isna(items.loc[4, "first_seen"])  # only rated in test: unknown at training time
    assert info.n_train == 3 and info.n_test == 3
