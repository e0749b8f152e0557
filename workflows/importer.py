"""Import real interaction files (CSV or Parquet) into a canonical dataset folder.

Validation names the file, the row and the column of the first problem it finds. Rows are
counted as **1-based data rows** (the header is not a row); for CSV files the message also gives
the **line number** (data row + 1, assuming no quoted newlines before it).

Duplicates: interaction rows identical in (user, item, timestamp) are collapsed, keeping the
first in file order (weights are not summed); the number dropped is recorded in
``dataset.json`` ``params.duplicates_dropped``. The same (user, item) at different timestamps is
kept (repeat consumption). Attribute tables must not repeat an id.

Users and items that appear in interactions but not in the attribute tables get rows with null
attributes. Attribute rows for items never seen in interactions are kept (the catalog); for users
they are dropped. ``available`` (bool) is always present on items: missing column or null -> True.

No leak from test into what training sees: the split (``--split per-user|global-time``,
workflows/split.py) happens first, and item attributes derived from interactions come from train
only: the catalog is the train items plus the item attribute table (an item that only test
interactions name is unknown at training time: its test rows are dropped and counted in
``params.test_rows_unknown_item``), and the MovieLens ``first_seen`` is the first TRAIN rating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cascade.errors import DataValidationError, InvalidInputError, NotFoundError, SchemaError
from cascade.workflows.dataset import (
    ColumnKind,
    DatasetInfo,
    DatasetWriter,
    describe_columns,
    interaction_schema,
    write_parquet,
)
from cascade.workflows.split import global_cut_time, split_interactions, validate_split, validate_test_fraction

TimeFormat = Literal["auto", "unix", "iso"]
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
NO_GENRES = "(no genres listed)"


# --- reading ------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def is_csv(path: Path) -> bool:
    return _suffix(Path(path)) in CSV_SUFFIXES


def read_table(path: Path):  # -> pyarrow.Table
    """Read a CSV or Parquet file (by extension) into an Arrow table with at least one row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataValidationError(
            f"{path}: unknown file extension {suffix or '(none)'!r} "
            f"(expected one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})"
        )
    if not path.is_file():
        raise NotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: file is empty (expected a header row and at least one data row)")
    try:
        if suffix in CSV_SUFFIXES:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataValidationError(f"{path}: cannot be read as {suffix.lstrip('.')}: {error}") from None
    if table.num_rows == 0:
        raise DataValidationError(f"{path}: file has no data rows (expected at least one row after the header)")
    return table.combine_chunks()


def _where(path: Path, index: int) -> str:
    """Human position of 0-based data row ``index``."""
    row = index + 1
    return f"row {row} (line {row + 1})" if is_csv(path) else f"row {row}"


def require_columns(table, path: Path, columns: dict[str, str]) -> None:
    """SchemaError naming the file, the missing column (and where it was asked for) and the columns found.

    ``columns`` maps each required column name to a label such as ``"set by --user-col"``.
    """
    found = table.column_names
    for column, label in columns.items():
        if column not in found:
            raise SchemaError(
                f"{path}: column {column!r} ({label}) not found; columns found: {', '.join(found)}"
            )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _to_pandas(column) -> pd.Series:
    return column.to_pandas() if hasattr(column, "to_pandas") else pd.Series(column)


# --- column parsers -----------------------------------------------------------------------------


def parse_ids(table, path: Path, column: str) -> np.ndarray:
    """int64 ids; DataValidationError for null, non-numeric or non-integral values."""
    import pyarrow.types as pat

    data = table.column(column)
    kind = data.type
    series = _to_pandas(data)
    if series.isna().any():
        index = _first(series.isna().to_numpy())
        raise DataValidationError(f"{path}: {_where(path, index)}, column {column!r}: id is missing (expected an integer)")
    if pat.is_integer(kind):
        return series.to_numpy(np.int64)
    if pat.is_floating(kind):
        values = series.to_numpy(np.float64)
        bad = values != np.floor(values)
    elif pat.is_string(kind) or pat.is_large_string(kind):
        values = pd.to_numeric(series.str.strip(), errors="coerce").to_numpy(np.float64)
        bad = np.isnan(values) | (values != np.floor(values))
    else:
        raise DataValidationError(f"{path}: column {column!r} has type {kind}; expected integer ids")
    if bad.any():
        index = _first(bad)
        raise DataValidationError(
            f"{path}: {_where(path, index)}, column {column!r}: {series.iloc[index]!r} is not a numeric id "
            "(expected an integer)"
        )
    if pat.is_string(kind) or pat.is_large_string(kind):
        return pd.to_numeric(series.str.strip()).to_numpy(np.int64)
    return values.astype(np.int64)


def parse_timestamps(table, path: Path, column: str, time_format: TimeFormat = "auto") -> np.ndarray:
    """int64 unix seconds from unix numbers, ISO-8601 text or Arrow timestamps."""
    import pyarrow as pa
    import pyarrow.types as pat

    data = table.column(column)
    kind = data.type
    series = _to_pandas(data)
    null = series.isna().to_numpy()
    if null.any():
        raise DataValidationError(
            f"{path}: {_where(path, _first(null))}, column {column!r}: timestamp is null "
            f"(expected {'ISO-8601 text' if time_format == 'iso' else 'unix seconds'})"
        )
    if pat.is_timestamp(kind) or pat.is_date(kind):
        seconds = data.cast(pa.timestamp("s", tz=getattr(kind, "tz", None)), safe=False).cast(pa.int64())
        return seconds.to_numpy().astype(np.int64)
    numeric = pat.is_integer(kind) or pat.is_floating(kind)
    text = pat.is_string(kind) or pat.is_large_string(kind)
    if not (numeric or text):
        raise DataValidationError(f"{path}: column {column!r} has type {kind}; expected unix seconds or ISO-8601 text")
    if time_format == "auto":
        time_format = "unix" if numeric or pd.to_numeric(series, errors="coerce").notna().all() else "iso"
    if time_format == "unix":
        values = series.to_numpy(np.float64) if numeric else pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            index = _first(bad)
            raise DataValidationError(
                f"{path}: {_where(path, index)}, column {column!r}: timestamp {series.iloc[index]!r} cannot be "
                "parsed (expected unix seconds, --time-format unix)"
            )
        return np.floor(values).astype(np.int64)
    if numeric:
        index = 0
        raise DataValidationError(
            f"{path}: {_where(path, index)}, column {column!r}: timestamp {series.iloc[index]!r} is a number "
            "but --time-format iso expects ISO-8601 text (e.g. 2024-01-31T12:00:00Z)"
        )
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        index = _first(bad)
        raise DataValidationError(
            f"{path}: {_where(path, index)}, column {column!r}: timestamp {series.iloc[index]!r} cannot be "
            "parsed (expected ISO-8601, e.g. 2024-01-31T12:00:00Z, --time-format iso)"
        )
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def parse_weights(table, path: Path, column: str) -> np.ndarray:
    """float32 weights: numeric, finite and >= 0."""
    data = table.column(column)
    series = pd.to_numeric(_to_pandas(data), errors="coerce")
    raw = _to_pandas(data)
    values = series.to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        index = _first(bad)
        what = "is null" if pd.isna(raw.iloc[index]) else f"{raw.iloc[index]!r} is not a number"
        raise DataValidationError(
            f"{path}: {_where(path, index)}, column {column!r}: weight {what} (expected a number >= 0)"
        )
    negative = values < 0
    if negative.any():
        index = _first(negative)
        raise DataValidationError(
            f"{path}: {_where(path, index)}, column {column!r}: weight {values[index]:g} is negative "
            "(expected a number >= 0)"
        )
    return values.astype(np.float32)


# --- attribute tables ---------------------------------------------------------------------------


def _attribute_table(path: Path, id_column: str, id_flag: str, target: str):
    """Read an attribute table, validate and rename its id column to ``target``, normalise types."""
    import pyarrow as pa
    import pyarrow.types as pat

    table = read_table(path)
    require_columns(table, path, {id_column: f"set by {id_flag}"})
    ids = parse_ids(table, path, id_column)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        a, b = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
        raise DataValidationError(
            f"{path}: {_where(path, b)}, column {id_column!r}: id {ids[b]} repeats {_where(path, a)} "
            "(expected one row per id)"
        )
    columns, names = [pa.array(ids, pa.int64())], [target]
    for name in table.column_names:
        if name == id_column:
            continue
        if name == target:
            raise SchemaError(f"{path}: column {name!r} clashes with the id column name; rename it")
        column = table.column(name)
        if pat.is_null(column.type):
            column = column.cast(pa.string())
        elif pat.is_timestamp(column.type) or pat.is_date(column.type):
            column = column.cast(pa.timestamp("s"), safe=False).cast(pa.int64())
        elif pat.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column)
        names.append(name)
    return pa.table(columns, names=names)


def _align(ids: np.ndarray, attributes, target: str):
    """Rows of ``attributes`` for each of ``ids`` (sorted), nulls where an id has no row."""
    import pyarrow as pa

    if attributes is None:
        return pa.table({target: pa.array(ids, pa.int64())})
    known = attributes.column(target).to_numpy()
    order = np.argsort(known)
    position = np.searchsorted(known, ids, sorter=order)
    position = np.minimum(position, max(known.size - 1, 0))
    found = known[order[position]] == ids
    take = pa.array(order[position], pa.int64(), mask=~found)
    aligned = attributes.take(take)
    return aligned.set_column(0, target, pa.array(ids, pa.int64()))


def _with_available(items):
    import pyarrow as pa
    import pyarrow.compute as pc

    if "available" in items.column_names:
        column = items.column("available")
        try:
            column = column.cast(pa.bool_())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SchemaError(f"items column 'available' has type {column.type}; expected bool") from None
        return items.set_column(items.column_names.index("available"), "available", pc.fill_null(column, True))
    return items.append_column("available", pa.array(np.ones(items.num_rows, dtype=bool)))


# --- the import ---------------------------------------------------------------------------------


class Interactions:
    """Validated interactions in file order plus the number of collapsed duplicates."""

    def __init__(self, frame: pd.DataFrame, duplicates_dropped: int) -> None:
        self.frame = frame
        self.duplicates_dropped = duplicates_dropped


def read_interactions(
    path: Path, user_col: str, item_col: str, time_col: str, weight_col: str | None = None,
    time_format: TimeFormat = "auto", preset: str | None = None,
) -> Interactions:
    """Read and validate an interactions file; collapse (user, item, timestamp) duplicates."""
    table = read_table(path)
    def label(flag: str) -> str:
        return f"required by --preset {preset}" if preset else f"set by {flag}"
    flags = {user_col: label("--user-col"), item_col: label("--item-col"), time_col: label("--time-col")}
    if weight_col:
        flags[weight_col] = label("--weight-col")
    require_columns(table, path, flags)
    frame = pd.DataFrame({
        "user_id": parse_ids(table, path, user_col),
        "item_id": parse_ids(table, path, item_col),
        "timestamp": parse_timestamps(table, path, time_col, time_format),
        "weight": parse_weights(table, path, weight_col) if weight_col else np.ones(table.num_rows, np.float32),
    })
    before = len(frame)
    frame = frame.drop_duplicates(subset=["user_id", "item_id", "timestamp"], keep="first")
    return Interactions(frame.reset_index(drop=True), before - len(frame))


class Split:
    """Train/test interactions of an import and how they were cut."""

    def __init__(self, interactions: Interactions, test_fraction: float, split: str) -> None:
        frame = interactions.frame
        self.mode = validate_split(split)
        self.test_fraction = test_fraction
        self.cut_time = global_cut_time(frame["timestamp"].to_numpy(), test_fraction) if self.mode == "global-time" else None
        self.train, self.test = split_interactions(frame, test_fraction, self.mode)
        self.duplicates_dropped = interactions.duplicates_dropped
        self.user_ids = np.unique(frame["user_id"].to_numpy())
        self.timestamps = frame["timestamp"].to_numpy()


def write_imported(
    out: Path, data: Split, users, items, *, name: str,
    source: Literal["import", "movielens"], params: dict[str, object],
    item_kinds: dict[str, ColumnKind] | None = None, user_kinds: dict[str, ColumnKind] | None = None,
    progress: bool = True,
) -> DatasetInfo:
    """Align attribute tables to the train catalog and write the canonical folder atomically."""
    import pyarrow as pa
    from cascade.progress import progress_bar

    train, test = data.train, data.test
    item_ids = np.unique(train["item_id"].to_numpy())
    if items is not None:
        item_ids = np.union1d(item_ids, items.column("item_id").to_numpy())
    unknown = ~np.isin(test["item_id"].to_numpy(), item_ids)
    if unknown.any():  # items first named after the cut: not in the catalog training sees
        test = test[~unknown].reset_index(drop=True)
    users_table = _align(data.user_ids, users, "user_id")
    items_table = _with_available(_align(item_ids, items, "item_id"))

    with progress_bar(total=2, desc="import", unit="step", enabled=progress) as bar:
        schema = interaction_schema()
        with DatasetWriter(out) as writer:
            write_parquet(users_table, writer.paths.users)
            write_parquet(items_table, writer.paths.items)
            for part, path in ((train, writer.paths.train), (test, writer.paths.test)):
                write_parquet(pa.Table.from_pandas(part, schema=schema, preserve_index=False), path)
            bar.update()
            info = DatasetInfo(
                name=name, source=source, n_users=int(data.user_ids.size), n_items=int(item_ids.size),
                n_train=len(train), n_test=len(test), test_fraction=data.test_fraction,
                split=data.mode, split_time=data.cut_time,
                time_range=(int(data.timestamps.min()), int(data.timestamps.max())),
                user_columns=describe_columns(users_table, "user_id", user_kinds),
                item_columns=describe_columns(items_table, "item_id", item_kinds),
                has_oracle=False,
                params={**params, "duplicates_dropped": data.duplicates_dropped,
                        "test_rows_unknown_item": int(unknown.sum())},
            )
            info = writer.commit(info)
            bar.update()
    return info


def import_interactions(
    out: Path, interactions: Path, *, users: Path | None = None, items: Path | None = None,
    user_col: str = "user", item_col: str = "item", time_col: str = "timestamp",
    weight_col: str | None = None, time_format: TimeFormat = "auto",
    users_id_col: str | None = None, items_id_col: str | None = None,
    test_fraction: float = 0.2, split: str = "per-user", name: str | None = None, progress: bool = True,
) -> DatasetInfo:
    """Generic import: interactions plus optional user/item attribute tables (kinds inferred)."""
    test_fraction = validate_test_fraction(test_fraction)
    validate_split(split)
    if time_format not in ("auto", "unix", "iso"):
        raise InvalidInputError(f"--time-format must be unix, iso or auto, got {time_format!r}")
    data = read_interactions(Path(interactions), user_col, item_col, time_col, weight_col, time_format)
    user_table = _attribute_table(Path(users), users_id_col or user_col, "--users-id-col", "user_id") if users else None
    item_table = _attribute_table(Path(items), items_id_col or item_col, "--items-id-col", "item_id") if items else None
    params = {
        "interactions": str(interactions), "users": str(users) if users else None,
        "items": str(items) if items else None, "user_col": user_col, "item_col": item_col,
        "time_col": time_col, "weight_col": weight_col, "time_format": time_format,
    }
    return write_imported(
        out, Split(data, test_fraction, split), user_table, item_table, name=name or Path(out).name,
        source="import", params=params, progress=progress,
    )


def _movielens_items(path: Path, first_seen: pd.Series):
    import pyarrow as pa

    table = read_table(path)
    require_columns(table, path, {c: "required by --preset movielens" for c in ("movieId", "title", "genres")})
    ids = parse_ids(table, path, "movieId")
    repeated = pd.Series(ids).duplicated().to_numpy()
    if repeated.any():
        index = _first(repeated)
        raise DataValidationError(f"{path}: {_where(path, index)}, column 'movieId': id {ids[index]} repeats (expected one row per movie)")
    raw = _to_pandas(table.column("genres")).fillna(NO_GENRES).astype(str)
    genres = [[] if g == NO_GENRES or not g else [x for x in g.split("|") if x] for g in raw]
    category = [g[0] if g else None for g in genres]
    seen = first_seen.reindex(ids)
    return pa.table({
        "item_id": pa.array(ids, pa.int64()),
        "title": table.column("title").cast(pa.string()),
        "category": pa.array(category, pa.string()),
        "genres": pa.array(genres, pa.list_(pa.string())),
        "first_seen": pa.array(seen.to_numpy(np.float64), pa.float64(), from_pandas=True).cast(pa.int64()),
        "available": pa.array(np.ones(len(ids), dtype=bool)),
    })


def import_movielens(
    out: Path, ratings: Path, movies: Path, *, test_fraction: float = 0.2, split: str = "per-user",
    name: str | None = None, progress: bool = True,
) -> DatasetInfo:
    """MovieLens preset: ratings.csv (userId,movieId,rating,timestamp) + movies.csv (movieId,title,genres).

    rating -> weight; first genre -> ``category`` (null for "(no genres listed)"); all genres ->
    ``genres`` list; ``first_seen`` = the movie's first TRAIN rating timestamp (null if it has none:
    test ratings are never looked at); every movie is available.
    """
    test_fraction = validate_test_fraction(test_fraction)
    validate_split(split)
    data = Split(read_interactions(Path(ratings), "userId", "movieId", "timestamp", "rating", "unix", preset="movielens"),
                 test_fraction, split)
    first_seen = data.train.groupby("item_id")["timestamp"].min()
    item_table = _movielens_items(Path(movies), first_seen)
    kinds: dict[str, ColumnKind] = {
        "title": "text", "category": "categorical", "genres": "list_categorical", "first_seen": "timestamp",
    }
    params = {"preset": "movielens", "ratings": str(ratings), "items": str(movies)}
    return write_imported(
        out, data, None, item_table, name=name or "movielens",
        source="movielens", params=params, item_kinds=kinds, progress=progress,
    )
