"""Map dataset attribute columns (DatasetInfo kinds + the Parquet Arrow types) to Feast field types.

One function decides, for every user/item attribute column, the Feast type it is stored as and the
Arrow type the feature-repo Parquet file holds, so any imported dataset gets a feature repo without
hand-written definitions:

| Arrow type in the dataset                 | stored Arrow type       | Feast type       |
|-------------------------------------------|-------------------------|------------------|
| int8/16/32, uint8/16                      | int32                   | Int32            |
| int64, uint32/64                          | int64                   | Int64            |
| float16/32                                | float32                 | Float32          |
| float64 (double)                          | float64                 | Float64          |
| bool                                      | bool                    | Bool             |
| string, large_string, dictionary<string>  | string                  | String           |
| timestamp[*], date32/64                   | int64 (unix seconds)    | Int64            |
| list<T> / large_list<T> of the above      | list<stored T>          | Array(Feast T)   |

Anything else raises :class:`SchemaError` naming the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from cascade.errors import SchemaError

Entity = Literal["user", "item"]

#: Columns cascade derives per user from train (docs/DESIGN.md "Derived per-user features").
DERIVED_USER_COLUMNS: dict[str, str] = {
    "recent_items": "Array(Int64)",
    "seen_items": "Array(Int64)",
    "n_interactions": "Int64",
}
JOIN_KEYS: dict[str, str] = {"user": "user_id", "item": "item_id"}
EVENT_TIMESTAMP = "event_timestamp"
#: Extra (non-feature) column of the item source: the item's row in items.parquet (catalog order).
CATALOG_ROW = "catalog_row"
_RESERVED = {EVENT_TIMESTAMP, "created", "created_timestamp", CATALOG_ROW}


@dataclass(frozen=True)
class FeastColumn:
    """One feature column: its name, Feast type expression (e.g. ``Array(String)``) and Arrow type."""

    name: str
    feast_type: str
    arrow_type: pa.DataType
    kind: str

    @property
    def is_list(self) -> bool:
        return self.feast_type.startswith("Array(")


def _scalar(name: str, arrow_type: pa.DataType) -> tuple[str, pa.DataType, bool]:
    """(feast type, stored arrow type, needs epoch conversion) for a scalar Arrow type."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return _scalar(name, t.value_type)
    if pa.types.is_boolean(t):
        return "Bool", pa.bool_(), False
    if t in (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16()):
        return "Int32", pa.int32(), False
    if t in (pa.int64(), pa.uint32(), pa.uint64()):
        return "Int64", pa.int64(), False
    if t in (pa.float16(), pa.float32()):
        return "Float32", pa.float32(), False
    if pa.types.is_float64(t):
        return "Float64", pa.float64(), False
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "String", pa.string(), False
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "Int64", pa.int64(), True
    raise SchemaError(
        f"column {name!r} has Arrow type {arrow_type}, which cascade cannot store in Feast "
        "(expected an integer, float, bool, string, timestamp/date or a list of those)"
    )


def feast_column(name: str, kind: str, arrow_type: pa.DataType) -> FeastColumn:
    """The Feast column for a dataset attribute column of ``arrow_type``."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner, stored, epoch = _scalar(name, arrow_type.value_type)
        if epoch:
            raise SchemaError(f"column {name!r}: lists of timestamps/dates are not supported")
        return FeastColumn(name, f"Array({inner})", pa.list_(stored), kind)
    inner, stored, _ = _scalar(name, arrow_type)
    return FeastColumn(name, inner, stored, kind)


def attribute_columns(
    entity: Entity, info_columns: list, arrow_schema: pa.Schema, table_name: str
) -> list[FeastColumn]:
    """Feast columns for every non-id attribute column of ``entity`` listed in DatasetInfo.

    ``info_columns`` are ``ColumnInfo`` objects; the Parquet schema is authoritative for the type.
    """
    join_key = JOIN_KEYS[entity]
    out: list[FeastColumn] = []
    for column in info_columns:
        if column.kind == "id" or column.name == join_key:
            continue
        if column.name in _RESERVED or (entity == "user" and column.name in DERIVED_USER_COLUMNS):
            raise SchemaError(
                f"{table_name}: {entity} column {column.name!r} collides with a name cascade reserves "
                f"for the feature repo ({sorted(_RESERVED | set(DERIVED_USER_COLUMNS))}); rename it"
            )
        index = arrow_schema.get_field_index(column.name)
        if index < 0:
            raise SchemaError(
                f"{table_name}: dataset.json lists {entity} column {column.name!r} but the file has "
                f"only {arrow_schema.names}"
            )
        out.append(feast_column(column.name, column.kind, arrow_schema.field(index).type))
    return out


def _to_epoch_seconds(array: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_date(array.type):
        array = array.cast(pa.timestamp("s"), safe=False)
    return array.cast(pa.timestamp("s"), safe=False).cast(pa.int64())


def conform(table: pa.Table, columns: list[FeastColumn]) -> list[pa.ChunkedArray]:
    """The columns of ``table`` cast to the stored Arrow types of ``columns`` (same order)."""
    out: list[pa.ChunkedArray] = []
    for column in columns:
        array = table.column(column.name)
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        value_type = array.type.value_type if column.is_list else array.type
        if pa.types.is_dictionary(value_type):
            array = array.cast(pa.list_(value_type.value_type))
        if not column.is_list and (pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)):
            array = _to_epoch_seconds(array)
        try:
            out.append(array.cast(column.arrow_type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"column {column.name!r}: cannot convert {array.type} to {column.arrow_type}: {exc}"
            ) from exc
    return out


def numpy_column(array: pa.ChunkedArray | pa.Array, is_list: bool) -> np.ndarray:
    """A column as numpy: scalars as a typed 1-D array (object with ``None`` for nulls in int/bool/
    string columns, NaN for nulls in float columns); lists as a 1-D object array of 1-D numpy arrays
    (a null list becomes an empty array)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if is_list:
        value_type = array.type.value_type
        empty = np.array([], dtype=_numpy_dtype(value_type))
        out = np.empty(len(array), dtype=object)
        offsets = array.offsets.to_numpy()
        values = array.values.to_numpy(zero_copy_only=False)
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            values = values.astype(object)
        valid = array.is_valid().to_numpy(zero_copy_only=False)
        for i in range(len(array)):
            out[i] = values[offsets[i] : offsets[i + 1]] if valid[i] else empty
        return out
    if array.null_count == 0:
        result = array.to_numpy(zero_copy_only=False)
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return result.astype(object)
        return result
    if pa.types.is_floating(array.type):
        return array.to_numpy(zero_copy_only=False)
    return np.array(array.to_pylist(), dtype=object)


def _numpy_dtype(arrow_type: pa.DataType) -> np.dtype:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return np.dtype(object)
    return np.dtype(arrow_type.to_pandas_dtype())
