"""The canonical dataset folder: ``dataset.json`` + Parquet tables (see docs/DESIGN.md).

Every producer (synthetic generator, importers) writes this layout through :class:`DatasetWriter`,
which writes into a temporary sibling folder and renames it into place only when complete, so a
failed run never leaves a half-written dataset and never destroys an existing one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cascade.errors import DataValidationError, NotFoundError
from cascade.cache import replace_dir

FORMAT_VERSION = 1
INFO_FILE = "dataset.json"
TABLES = ("users.parquet", "items.parquet", "train.parquet", "test.parquet")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight")

ColumnKind = Literal["id", "categorical", "continuous", "timestamp", "list_categorical", "flag", "text"]


class ColumnInfo(BaseModel):
    """One attribute column of the users or items table."""

    name: str
    kind: ColumnKind
    dtype: str = Field(description="Arrow type string, e.g. int64, string, double, list<item: string>")


class DatasetInfo(BaseModel):
    """Contents of ``dataset.json``."""

    format_version: int = FORMAT_VERSION
    name: str
    source: Literal["synthetic", "import", "movielens"]
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    n_users: int
    n_items: int
    n_train: int
    n_test: int
    test_fraction: float
    split: Literal["per-user", "global-time"] = Field(
        "per-user", description="train/test split mode (cascade.workflows.split)")
    split_time: int | None = Field(None, description="global-time split: the cut time T (test = timestamp >= T)")
    time_range: tuple[int, int] = Field(description="(min, max) interaction timestamp, unix seconds")
    user_columns: list[ColumnInfo]
    item_columns: list[ColumnInfo]
    content_hash: str = ""
    has_oracle: bool = False
    params: dict[str, object] = Field(default_factory=dict, description="generator/import parameters")

    @classmethod
    def load(cls, directory: Path) -> "DatasetInfo":
        path = Path(directory) / INFO_FILE
        if not path.is_file():
            raise NotFoundError(
                f"{directory} is not a cascade dataset: {INFO_FILE} is missing "
                "(create one with `cascade data generate` or `cascade data import`)"
            )
        info = cls.model_validate_json(path.read_text())
        if info.format_version != FORMAT_VERSION:
            raise DataValidationError(
                f"{path}: format_version {info.format_version} is not supported (expected {FORMAT_VERSION})"
            )
        return info

    def column(self, entity: Literal["user", "item"], name: str) -> ColumnInfo:
        columns = self.user_columns if entity == "user" else self.item_columns
        for column in columns:
            if column.name == name:
                return column
        raise NotFoundError(f"dataset has no {entity} column {name!r}; it has {[c.name for c in columns]}")


class DatasetPaths(BaseModel):
    """Resolved paths of one dataset folder."""

    root: Path
    users: Path
    items: Path
    train: Path
    test: Path
    oracle: Path


def dataset_paths(directory: Path) -> DatasetPaths:
    root = Path(directory).resolve()
    return DatasetPaths(
        root=root,
        users=root / "users.parquet",
        items=root / "items.parquet",
        train=root / "train.parquet",
        test=root / "test.parquet",
        oracle=root / "oracle",
    )


def load_dataset(directory: Path) -> tuple[DatasetPaths, DatasetInfo]:
    """Paths and info of a dataset folder; NotFoundError if it is not complete."""
    info = DatasetInfo.load(directory)
    paths = dataset_paths(directory)
    for table in (paths.users, paths.items, paths.train, paths.test):
        if not table.is_file():
            raise NotFoundError(f"dataset {directory} is incomplete: {table.name} is missing")
    return paths, info


def content_hash(directory: Path) -> str:
    """sha256 over the dataset's Parquet tables (and oracle files): the downstream cache key."""
    digest = hashlib.sha256()
    root = Path(directory)
    files = [root / t for t in TABLES]
    oracle = root / "oracle"
    if oracle.is_dir():
        files += sorted(p for p in oracle.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


class DatasetWriter:
    """Write a dataset into a temporary folder; :meth:`commit` renames it over ``target``.

    Use as a context manager: if the body raises, the temporary folder is removed and any
    existing dataset at ``target`` is untouched.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target).resolve()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        self.paths = dataset_paths(self.tmp)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self, info: DatasetInfo) -> DatasetInfo:
        """Hash the tables, write dataset.json, and atomically move the folder into place."""
        for table in TABLES:
            if not (self.tmp / table).is_file():
                raise DataValidationError(f"internal: {table} was not written before commit")
        info = info.model_copy(update={"content_hash": content_hash(self.tmp)})
        (self.tmp / INFO_FILE).write_text(info.model_dump_json(indent=2))
        replace_dir(self.tmp, self.target)
        return info


def write_json(path: Path, payload: object) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


# --- column kinds and table helpers (shared by the generator and the importers) ---------------

#: An integer attribute with at most this many distinct values is categorical, above it continuous.
LOW_CARDINALITY_INT = 100


def interaction_schema():  # -> pyarrow.Schema (pyarrow imported lazily)
    """Arrow schema of train.parquet / test.parquet."""
    import pyarrow as pa

    return pa.schema(
        [("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64()), ("weight", pa.float32())]
    )


def infer_column_kind(name: str, arrow_type, n_unique: int) -> ColumnKind:
    """Kind of an attribute column from its Arrow type.

    ``available`` (bool) is the ``flag`` column business rules read; other bools, strings and
    integers with at most :data:`LOW_CARDINALITY_INT` distinct values are ``categorical``; floats
    and high-cardinality integers are ``continuous``; lists are ``list_categorical``; Arrow
    timestamps/dates are ``timestamp``.
    """
    import pyarrow.types as pat

    if pat.is_boolean(arrow_type):
        return "flag" if name == "available" else "categorical"
    if pat.is_list(arrow_type) or pat.is_large_list(arrow_type):
        return "list_categorical"
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return "timestamp"
    if pat.is_floating(arrow_type):
        return "continuous"
    if pat.is_integer(arrow_type):
        return "categorical" if n_unique <= LOW_CARDINALITY_INT else "continuous"
    return "categorical"


def describe_columns(table, id_column: str, overrides: dict[str, ColumnKind] | None = None) -> list[ColumnInfo]:
    """ColumnInfo for every column of an Arrow ``table``; ``id_column`` gets kind ``id``."""
    import pyarrow.compute as pc

    overrides = overrides or {}
    columns: list[ColumnInfo] = []
    for field in table.schema:
        if field.name == id_column:
            kind: ColumnKind = "id"
        elif field.name in overrides:
            kind = overrides[field.name]
        else:
            column = table.column(field.name)
            n_unique = len(pc.unique(column)) if field.type.num_fields == 0 else 0
            kind = infer_column_kind(field.name, field.type, n_unique)
        columns.append(ColumnInfo(name=field.name, kind=kind, dtype=str(field.type)))
    return columns


def write_parquet(table, path: Path, row_group_size: int = 1 << 20) -> None:
    """Write an Arrow table with the project's Parquet settings (zstd, bounded row groups)."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)
