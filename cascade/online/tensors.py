"""Fixed tensor layouts between Triton stages.

Stage configs (``config.pbtxt``) are static, while the feature columns depend on the dataset. So
feature columns travel packed into a few typed tensors whose column order is derived from the
fitted workflow, which every stage loads:

* raw item features (``item_features`` -> ``transform``): ``item_int`` INT64 [N, I] (null =
  INT64 min), ``item_float`` FP64 [N, F] (null = NaN; bools as 0/1), ``item_str`` BYTES [N, S]
  (null = empty), ``item_list`` BYTES [N, L] (each list column padded to the batch's longest list
  with empty values, columns concatenated; the per-column widths travel in ``item_list_widths``).
* encoded features (``user_features`` -> ``query_tower``/``transform``, ``transform`` ->
  ``ranking``): ``*_cat`` INT64 [B, C], ``*_cont`` FP32 [B, F], ``*_lists`` INT64 [B, sum(L)].

Everything is vectorised: no per-row Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

INT_NULL = np.iinfo(np.int64).min


@dataclass(frozen=True)
class RawColumn:
    name: str
    dtype: str  # "int64" | "float64" | "string" | "bool"
    is_list: bool


@dataclass(frozen=True)
class RawLayout:
    """Column order of raw (not yet encoded) features of one entity."""

    ints: tuple[str, ...]
    floats: tuple[str, ...]
    strings: tuple[str, ...]
    lists: tuple[RawColumn, ...]

    @classmethod
    def from_columns(cls, columns: Iterable[RawColumn]) -> "RawLayout":
        ints, floats, strings, lists = [], [], [], []
        for column in columns:
            if column.is_list:
                lists.append(column)
            elif column.dtype == "int64":
                ints.append(column.name)
            elif column.dtype in ("float64", "bool"):
                floats.append(column.name)
            else:
                strings.append(column.name)
        return cls(tuple(ints), tuple(floats), tuple(strings), tuple(lists))

    @property
    def names(self) -> tuple[str, ...]:
        return self.ints + self.floats + self.strings + tuple(c.name for c in self.lists)


def _to_bytes(values: np.ndarray) -> np.ndarray:
    """Object array of str/None -> object array of UTF-8 bytes (None -> b"")."""
    flat = np.asarray(values, dtype=object)
    out = np.empty(flat.shape, dtype=object)
    mask = np.frompyfunc(lambda v: v is None or (isinstance(v, float) and v != v), 1, 1)(flat).astype(bool)
    out[mask] = b""
    if (~mask).any():
        out[~mask] = np.char.encode(flat[~mask].astype(str), "utf-8").astype(object)
    return out


def _from_bytes(values: np.ndarray) -> np.ndarray:
    """Object array of UTF-8 bytes -> object array of str, b"" -> None."""
    raw = np.asarray(values)
    as_bytes = raw.astype(np.bytes_)
    out = np.char.decode(as_bytes, "utf-8").astype(object)
    out[as_bytes == b""] = None
    return out


def _pad_lists(values: np.ndarray) -> tuple[np.ndarray, int]:
    """1-D object array of sequences (or a 2-D array) -> 2-D object array padded with None."""
    if values.ndim == 2:
        return values.astype(object), values.shape[1]
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=len(values))
    width = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(values), width), None, dtype=object)
    if width:
        flat = np.concatenate([np.asarray(v, dtype=object) for v in values if v is not None and len(v)]) \
            if lengths.sum() else np.empty(0, dtype=object)
        rows = np.repeat(np.arange(len(values)), lengths)
        cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = flat
    return out, width


def pack_raw(columns: Mapping[str, np.ndarray], layout: RawLayout, n_rows: int) -> dict[str, np.ndarray]:
    """Pack raw columns (snapshot gather output) into the four raw tensors + list widths."""
    def stack(names: Sequence[str], dtype, fill) -> np.ndarray:
        if not names:
            return np.full((n_rows, 0), fill, dtype=dtype)
        return np.stack([np.asarray(columns[name]) for name in names], axis=1).astype(dtype, copy=False)

    ints = np.full((n_rows, len(layout.ints)), INT_NULL, dtype=np.int64)
    for j, name in enumerate(layout.ints):
        column = np.asarray(columns[name])
        if column.dtype.kind == "f":
            valid = ~np.isnan(column)
            ints[valid, j] = column[valid].astype(np.int64)
        else:
            ints[:, j] = column.astype(np.int64)
    floats = stack(layout.floats, np.float64, np.nan)
    strings = np.empty((n_rows, len(layout.strings)), dtype=object)
    for j, name in enumerate(layout.strings):
        strings[:, j] = _to_bytes(columns[name])
    padded, widths = [], []
    for column in layout.lists:
        block, width = _pad_lists(np.asarray(columns[column.name], dtype=object))
        padded.append(_to_bytes(block.reshape(-1)).reshape(block.shape) if width else block)
        widths.append(width)
    lists = np.concatenate(padded, axis=1) if padded else np.empty((n_rows, 0), dtype=object)
    return {
        "item_int": ints,
        "item_float": floats,
        "item_str": strings if strings.size or n_rows == 0 else strings.reshape(n_rows, 0),
        "item_list": lists,
        "item_list_widths": np.asarray(widths, dtype=np.int64),
    }


def unpack_raw(tensors: Mapping[str, np.ndarray], layout: RawLayout) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_raw`: named raw columns in the preprocessing workflow's input forms
    (ints: float64 with NaN nulls when any are null, else int64; strings: object with None nulls;
    lists: 2-D arrays padded with None/-1)."""
    out: dict[str, np.ndarray] = {}
    ints = np.asarray(tensors["item_int"])
    for j, name in enumerate(layout.ints):
        column = ints[:, j]
        null = column == INT_NULL
        if null.any():
            as_float = column.astype(np.float64)
            as_float[null] = np.nan
            out[name] = as_float
        else:
            out[name] = column
    floats = np.asarray(tensors["item_float"])
    for j, name in enumerate(layout.floats):
        out[name] = floats[:, j]
    strings = np.asarray(tensors["item_str"], dtype=object)
    for j, name in enumerate(layout.strings):
        out[name] = _from_bytes(strings[:, j])
    lists = np.asarray(tensors["item_list"], dtype=object)
    widths = np.asarray(tensors["item_list_widths"]).astype(np.int64).reshape(-1)
    start = 0
    for column, width in zip(layout.lists, widths):
        block = lists[:, start:start + width]
        start += width
        decoded = _from_bytes(block.reshape(-1)).reshape(block.shape) if block.size else block
        if column.dtype == "int64":
            filled = np.where(decoded == None, -1, decoded)  # noqa: E711 (elementwise)
            out[column.name] = filled.astype(np.int64)
        elif column.dtype == "float64":
            filled = np.where(decoded == None, np.nan, decoded)  # noqa: E711
            out[column.name] = filled.astype(np.float64)
        else:
            out[column.name] = decoded
    return out


@dataclass(frozen=True)
class EncodedLayout:
    """Column order of encoded features of one entity (from the workflow's output schema)."""

    categorical: tuple[str, ...]
    continuous: tuple[str, ...]
    lists: tuple[tuple[str, int], ...]  # (name, list_length)

    @property
    def list_width(self) -> int:
        return sum(length for _, length in self.lists)

    @property
    def names(self) -> tuple[str, ...]:
        return self.categorical + self.continuous + tuple(name for name, _ in self.lists)


def pack_encoded(encoded: Mapping[str, np.ndarray], layout: EncodedLayout, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cat = np.empty((n_rows, len(layout.categorical)), dtype=np.int64)
    for j, name in enumerate(layout.categorical):
        cat[:, j] = encoded[name]
    cont = np.empty((n_rows, len(layout.continuous)), dtype=np.float32)
    for j, name in enumerate(layout.continuous):
        cont[:, j] = encoded[name]
    lists = np.empty((n_rows, layout.list_width), dtype=np.int64)
    start = 0
    for name, length in layout.lists:
        lists[:, start:start + length] = encoded[name]
        start += length
    return cat, cont, lists


def unpack_encoded(cat: np.ndarray, cont: np.ndarray, lists: np.ndarray, layout: EncodedLayout) -> dict[str, np.ndarray]:
    """Named, C-contiguous feature arrays as the ONNX models take them."""
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(layout.categorical):
        out[name] = np.ascontiguousarray(cat[:, j], dtype=np.int64)
    for j, name in enumerate(layout.continuous):
        out[name] = np.ascontiguousarray(cont[:, j], dtype=np.float32)
    start = 0
    for name, length in layout.lists:
        out[name] = np.ascontiguousarray(lists[:, start:start + length], dtype=np.int64)
        start += length
    return out
