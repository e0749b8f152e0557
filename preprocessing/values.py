"""Validate raw input arrays and bring them to one canonical in-memory form (:class:`Values`).

Every path (fit, ``transform_batch``, ``transform_dataset``) goes through :func:`canonicalize`, so an
int64 id that arrives as int64, as float64 with NaN (Parquet nulls), or as an object array with
None (Feast) becomes the same int64 value and hashes to the same OOV bucket. Vectorised only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascade.errors import SchemaError
from cascade.preprocessing.schema import InputColumn

LIST_PAD_INT = -1  # padding value of 2-D integer list inputs


@dataclass
class Values:
    """A column in canonical form.

    ``data`` is flat (one entry per element): int64, float64 (NaN = null) or object (str / None).
    ``null`` marks null elements of int64 data (None: no nulls; float data uses NaN); for object
    data it may be None and is then computed on demand by :meth:`null_mask`.
    ``offsets`` (int64, length B + 1) is set for list columns; ``n_rows`` is B.
    """

    data: np.ndarray
    null: np.ndarray | None
    offsets: np.ndarray | None
    n_rows: int

    @property
    def is_list(self) -> bool:
        return self.offsets is not None

    def null_mask(self) -> np.ndarray:
        if self.data.dtype.kind == "f":
            return np.isnan(self.data)
        if self.null is None:
            if self.data.dtype == object:  # string nulls (None/NaN) are found lazily
                self.null = pd.isna(self.data)
                return self.null
            return np.zeros(len(self.data), dtype=bool)
        return self.null

    def row_weights(self, weights: np.ndarray) -> np.ndarray:
        """Per-element weights: each element of a list row carries the row's weight."""
        if self.offsets is None:
            return weights
        return np.repeat(weights, np.diff(self.offsets))


def _bad(spec: InputColumn, got: str) -> SchemaError:
    return SchemaError(f"{spec.entity} column {spec.name!r} has {got}; expected {spec.describe()}")


def _scalar(arr: np.ndarray, spec: InputColumn) -> tuple[np.ndarray, np.ndarray | None]:
    """(data, null) for a 1-D array of ``spec.dtype`` elements."""
    kind = arr.dtype.kind
    want = spec.dtype
    if kind == "O":
        inferred = pd.api.types.infer_dtype(arr, skipna=True)
        if want == "string":
            if inferred not in ("string", "empty"):
                raise _bad(spec, f"object values of type {inferred}")
            return arr, None  # None/NaN nulls stay in place; Values.null_mask finds them when needed
        null = pd.isna(arr)
        allowed = {
            "int64": ("integer", "empty", "floating", "mixed-integer-float"),
            "float64": ("integer", "empty", "floating", "mixed-integer-float", "boolean"),
            "bool": ("boolean", "empty", "integer"),
        }[want]
        if inferred not in allowed:
            raise _bad(spec, f"object values of type {inferred}")
        if want == "int64" and inferred in ("integer", "empty"):
            data = np.zeros(len(arr), dtype=np.int64)
            data[~null] = arr[~null].astype(np.int64)
            return data, (null if null.any() else None)
        numeric = np.zeros(len(arr), dtype=np.float64)
        numeric[null] = np.nan
        numeric[~null] = arr[~null].astype(np.float64)
        arr, kind = numeric, "f"
    if kind == "M":
        arr, kind = arr.astype("datetime64[s]").view(np.int64), "i"
    if want == "string":
        if kind == "U":
            return arr.astype(object), None
        raise _bad(spec, f"dtype {arr.dtype}")
    if kind not in "iufb":
        raise _bad(spec, f"dtype {arr.dtype}")
    if want == "int64":
        if kind == "b":
            raise _bad(spec, f"dtype {arr.dtype}")
        if kind == "f":
            null = np.isnan(arr)
            filled = np.where(null, 0.0, arr)
            if np.any(filled != np.floor(filled)):
                raise _bad(spec, "non-integral float values")
            return filled.astype(np.int64), (null if null.any() else None)
        return arr.astype(np.int64, copy=False), None
    # float64 and bool: float64 with NaN as null
    return arr.astype(np.float64, copy=False), None


def _list(arr: np.ndarray, spec: InputColumn) -> Values:
    import pyarrow as pa

    if arr.ndim == 2:
        n_rows, width = arr.shape
        flat = arr.reshape(-1)
        if spec.dtype == "int64" and flat.dtype.kind in "iu":
            data = flat.astype(np.int64, copy=False)
            null = data == LIST_PAD_INT
            null = null if null.any() else None
        else:
            data, null = _scalar(flat, spec)
        offsets = np.arange(n_rows + 1, dtype=np.int64) * width
        return Values(data, null, offsets, n_rows)
    if arr.dtype.kind != "O":
        raise _bad(spec, f"a 1-D {arr.dtype} array")
    arrow_type = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}[spec.dtype]
    try:
        lists = pa.array(arr, type=pa.list_(arrow_type), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise _bad(spec, f"elements that are not lists of {spec.dtype} ({exc})") from None
    offsets = lists.offsets.to_numpy().astype(np.int64)
    elements = lists.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    offsets = offsets - offsets[0]
    if spec.dtype == "string":
        return Values(elements.to_numpy(zero_copy_only=False).astype(object, copy=False), None, offsets, len(arr))
    if spec.dtype == "int64":
        if elements.null_count == 0:
            return Values(elements.to_numpy().astype(np.int64, copy=False), None, offsets, len(arr))
        null = elements.is_null().to_numpy(zero_copy_only=False)
        data = elements.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return Values(data, null, offsets, len(arr))
    data = elements.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return Values(data, None, offsets, len(arr))


def canonicalize(raw: object, spec: InputColumn) -> Values:
    """Validate ``raw`` against ``spec`` and return its canonical :class:`Values` (SchemaError otherwise)."""
    if isinstance(raw, pd.Series):
        raw = raw.to_numpy()
    arr = raw if isinstance(raw, np.ndarray) else None
    if arr is None:
        if isinstance(raw, (list, tuple)):
            arr = np.empty(len(raw), dtype=object) if spec.is_list else np.asarray(raw)
            if spec.is_list:
                arr[:] = list(raw)
        else:
            raise _bad(spec, f"type {type(raw).__name__}")
    if spec.is_list:
        if arr.ndim not in (1, 2):
            raise _bad(spec, f"{arr.ndim} dimensions")
        return _list(arr, spec)
    if arr.ndim != 1:
        raise _bad(spec, f"shape {arr.shape}")
    data, null = _scalar(arr, spec)
    return Values(data, null, None, len(arr))
