"""The canonical dataset contract: DatasetWriter atomicity, load_dataset, column kinds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cascade.errors import DataValidationError, NotFoundError
from cascade.workflows.dataset import (
    TABLES,
    DatasetInfo,
    DatasetWriter,
    content_hash,
    describe_columns,
    interaction_schema,
    load_dataset,
    write_parquet,
)


def _info(**kw) -> DatasetInfo:
    base = dict(name="t", source="import", n_users=1, n_items=1, n_train=1, n_test=0, test_fraction=0.0,
                time_range=(1, 1), user_columns=[], item_columns=[])
    return DatasetInfo(**{**base, **kw})


def _write_tables(writer: DatasetWriter, value: int) -> None:
    schema = interaction_schema()
    write_parquet(pa.table({"user_id": [value]}), writer.paths.users)
    write_parquet(pa.table({"item_id": [value], "available": [True]}), writer.paths.items)
    write_parquet(pa.table({"user_id": [value], "item_id": [value], "timestamp": [1], "weight": [1.0]}, schema=schema),
                  writer.paths.train)
    write_parquet(schema.empty_table(), writer.paths.test)


def test_commit_replaces_and_failure_keeps_existing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with DatasetWriter(out) as writer:
        _write_tables(writer, 1)
        first = writer.commit(_info(name="first"))
    assert first.content_hash == content_hash(out)
    paths, info = load_dataset(out)
    assert info.name == "first" and all((out / t).is_file() for t in TABLES)

    with pytest.raises(RuntimeError):
        with DatasetWriter(out) as writer:
            _write_tables(writer, 2)
            raise RuntimeError("boom")
    assert DatasetInfo.load(out).name == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]

    with DatasetWriter(out) as writer:
        _write_tables(writer, 2)
        second = writer.commit(_info(name="second"))
    assert DatasetInfo.load(out).name == "second" and second.content_hash != first.content_hash
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_commit_refuses_missing_table(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="test.parquet"):
        with DatasetWriter(tmp_path / "ds") as writer:
            write_parquet(pa.table({"user_id": [1]}), writer.paths.users)
            write_parquet(pa.table({"item_id": [1]}), writer.paths.items)
            write_parquet(interaction_schema().empty_table(), writer.paths.train)
            writer.commit(_info())
    assert not (tmp_path / "ds").exists()


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="dataset.json"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(_info().model_dump_json())
    with pytest.raises(NotFoundError, match="users.parquet"):
        load_dataset(tmp_path)


def test_describe_columns_kinds() -> None:
    table = pa.table({
        "item_id": pa.array([1, 2, 3], pa.int64()),
        "price": pa.array([1.5, 2.0, None], pa.float32()),
        "year": pa.array([1999, 2001, 1999], pa.int64()),
        "big": pa.array(list(range(3)), pa.int64()),
        "tags": pa.array([["a"], [], None], pa.list_(pa.string())),
        "flagged": pa.array([True, False, None]),
        "available": pa.array([True, True, False]),
        "name": pa.array(["a", "b", None]),
        "when": pa.array([0, 1, 2], pa.timestamp("s")),
    })
    kinds = {c.name: (c.kind, c.dtype) for c in describe_columns(table, "item_id", {"big": "continuous"})}
    assert kinds == {
        "item_id": ("id", "int64"), "price": ("continuous", "float"), "year": ("categorical", "int64"),
        "big": ("continuous", "int64"), "tags": ("list_categorical", "list<item: string>"),
        "flagged": ("categorical", "bool"), "available": ("flag", "bool"), "name": ("categorical", "string"),
        "when": ("timestamp", "timestamp[s]"),
    }
    many = pa.table({"item_id": list(range(500)), "n": list(range(500))})
    assert describe_columns(many, "item_id")[1].kind == "continuous"
