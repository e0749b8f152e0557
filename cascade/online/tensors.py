"""Fixed tensor layouts between Triton stages.

Stage configs (``config.pbtxt``) are static, while the feature columns depend on the dataset. So
feature columns travel packed into a few typed tensors whose column order is derived from the
fitted workflow, which every stage loads:

* raw item features (``item_features`` -> ``transform``): ``item_int`` INT64 [N, I] (null =
  INT64 min), ``item_float`` FP64 [N, F] (null = NaN; bools as 0/1), ``item_str`` INT64 [N, S]
  dictionary codes (0 = null), ``item_list`` INT64 [N, L] codes (each list column padded with 0 to
  the batch's longest list, columns concatenated; the per-column widths travel in
  ``item_list_widths``). No BYTES tensor crosses stages on the hot path: BYTES go through the
  Python backend element by element. Dictionaries are built per item-snapshot version from the
  snapshot itself (:func:`string_dictionary`, deterministic), so each stage that needs strings
  back (transform, business_logic) rebuilds the same dictionary from ``snapshot_version``.
* encoded features (``user_features`` -> ``query_tower``/``transform``, ``transform`` ->
  ``ranking``): ``*_cat`` INT64 [B, C], ``*_cont`` FP32 [B, F], ``*_lists`` INT64 [B, sum(L)].

Everything is vectorised: no per-row Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

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


def _string_forms(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object array of str/None/NaN/other -> (null mask, str forms of the non-null values).
    Null = None, a float NaN or the empty string (the forms the old BYTES tensors dropped)."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, dtype=bool), np.empty(0, dtype=str)
    null = np.frompyfunc(lambda v: v is None or (isinstance(v, float) and v != v), 1, 1)(flat).astype(bool)
    forms = flat[~null].astype(str)
    empty = forms == ""
    if empty.any():
        idx = np.flatnonzero(~null)[empty]
        null[idx] = True
        forms = forms[~empty]
    return null, forms


def string_dictionary(values: np.ndarray, is_list: bool | None = None) -> np.ndarray:
    """Dictionary of a string-like column (scalars, or a 1-D object array of sequences for list
    columns): the sorted unique non-null str forms. Code ``1 + i`` is ``dictionary[i]``; code 0 is
    null. Deterministic in the values, so every stage that builds it from the same snapshot gets the
    same codes."""
    if is_list is None:
        is_list = _is_list_column(values)
    flat = _flatten_lists(values) if is_list else np.asarray(values, dtype=object).reshape(-1)
    _, forms = _string_forms(flat)
    return np.unique(forms).astype(object)


def encode_strings(values: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
    """int64 codes (same shape as ``values``) into ``dictionary``; 0 = null. A value missing from the
    dictionary is an error (dictionaries are built from the whole snapshot)."""
    arr = np.asarray(values, dtype=object)
    null, forms = _string_forms(arr)
    codes = np.zeros(arr.size, dtype=np.int64)
    if forms.size:
        keys = np.asarray(dictionary).astype(str)
        pos = np.searchsorted(keys, forms)
        pos = np.minimum(pos, max(len(keys) - 1, 0))
        if not len(keys) or (keys[pos] != forms).any():
            raise KeyError("encode_strings: value not in the dictionary (rebuild it from the snapshot)")
        codes[~null] = pos + 1
    return codes.reshape(arr.shape)


def decode_strings(codes: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_strings`: object array of str, None for code 0 (vectorised gather)."""
    table = np.empty(len(dictionary) + 1, dtype=object)
    table[0] = None
    table[1:] = dictionary
    return table[np.asarray(codes, dtype=np.int64)]


def _is_list_column(values: np.ndarray) -> bool:
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1 or arr.dtype != object or not arr.size:
        return False
    return any(isinstance(v, (np.ndarray, list, tuple)) for v in arr[: min(arr.size, 16)])


def _flatten_lists(values: np.ndarray) -> np.ndarray:
    parts = [np.asarray(v, dtype=object).reshape(-1) for v in values if v is not None and len(v)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


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


def dictionary_columns(layout: RawLayout) -> tuple[str, ...]:
    """Raw columns that travel as dictionary codes: the string columns and every list column."""
    return layout.strings + tuple(c.name for c in layout.lists)


def build_dictionaries(columns: Mapping[str, np.ndarray], names: Iterable[str],
                       list_names: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Dictionaries of the ``names`` present in ``columns`` (``list_names``: list columns)."""
    lists = set(list_names)
    return {name: string_dictionary(np.asarray(columns[name], dtype=object), name in lists)
            for name in names if name in columns}


def _int_column(column: np.ndarray) -> np.ndarray:
    column = np.asarray(column)
    if column.dtype.kind in "iub":
        return column.astype(np.int64)
    out = np.full(column.shape, INT_NULL, dtype=np.int64)
    if column.dtype.kind == "f":
        valid = ~np.isnan(column)
        out[valid] = column[valid].astype(np.int64)
        return out
    valid = np.frompyfunc(lambda v: v is not None and not (isinstance(v, float) and v != v), 1, 1)(column).astype(bool)
    out[valid] = column[valid].astype(np.int64)
    return out


def _float_column(column: np.ndarray) -> np.ndarray:
    column = np.asarray(column)
    if column.dtype.kind in "iubf":
        return column.astype(np.float64)
    out = np.full(column.shape, np.nan, dtype=np.float64)
    valid = np.frompyfunc(lambda v: v is not None, 1, 1)(column).astype(bool)
    out[valid] = column[valid].astype(np.float64)
    return out


def pack_raw(columns: Mapping[str, np.ndarray], layout: RawLayout, n_rows: int,
             dictionaries: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pack raw columns into the raw tensors: ``item_int`` INT64 (null = INT64 min), ``item_float``
    FP64 (null = NaN), ``item_str`` INT64 dictionary codes [N, S], ``item_list`` INT64 codes [N,
    sum(widths)] (each list column padded with code 0 to the batch's longest list) and
    ``item_list_widths``. No BYTES tensor: strings cross stages as codes into ``dictionaries``
    (see :func:`string_dictionary`)."""
    ints = np.full((n_rows, len(layout.ints)), INT_NULL, dtype=np.int64)
    for j, name in enumerate(layout.ints):
        ints[:, j] = _int_column(columns[name])
    floats = np.full((n_rows, len(layout.floats)), np.nan, dtype=np.float64)
    for j, name in enumerate(layout.floats):
        floats[:, j] = _float_column(columns[name])
    strings = np.zeros((n_rows, len(layout.strings)), dtype=np.int64)
    for j, name in enumerate(layout.strings):
        strings[:, j] = encode_strings(columns[name], dictionaries[name])
    padded, widths = [], []
    for column in layout.lists:
        block, width = _pad_lists(np.asarray(columns[column.name], dtype=object))
        padded.append(encode_strings(block, dictionaries[column.name]) if width else np.zeros((n_rows, 0), np.int64))
        widths.append(width)
    lists = np.concatenate(padded, axis=1) if padded else np.zeros((n_rows, 0), dtype=np.int64)
    return {
        "item_int": ints,
        "item_float": floats,
        "item_str": strings,
        "item_list": lists.astype(np.int64, copy=False),
        "item_list_widths": np.asarray(widths, dtype=np.int64),
    }


def unpack_raw(tensors: Mapping[str, np.ndarray], layout: RawLayout,
               dictionaries: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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
    strings = np.asarray(tensors["item_str"])
    for j, name in enumerate(layout.strings):
        out[name] = decode_strings(strings[:, j], dictionaries[name])
    lists = np.asarray(tensors["item_list"])
    widths = np.asarray(tensors["item_list_widths"]).astype(np.int64).reshape(-1)
    start = 0
    for column, width in zip(layout.lists, widths):
        block = lists[:, start:start + width]
        start += width
        decoded = decode_strings(block, dictionaries[column.name]) if block.size else block.astype(object)
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
class CatalogTensors:
    """The raw tensors of a whole item snapshot, packed once at snapshot load (catalog order), so a
    request only gathers rows: no per-request string handling."""

    version: str
    tensors: dict[str, np.ndarray]  # pack_raw output over every catalog row
    list_lengths: tuple[np.ndarray, ...]  # per list column: int64 [n_items]
    dictionaries: dict[str, np.ndarray]

    @classmethod
    def build(cls, version: str, columns: Mapping[str, np.ndarray], layout: RawLayout, n_rows: int,
              dictionaries: Mapping[str, np.ndarray]) -> "CatalogTensors":
        tensors = pack_raw(columns, layout, n_rows, dictionaries)
        lengths = tuple(
            np.fromiter((0 if v is None else len(v) for v in np.asarray(columns[c.name], dtype=object)),
                        dtype=np.int64, count=n_rows)
            for c in layout.lists
        )
        return cls(version, tensors, lengths, dict(dictionaries))

    def gather(self, rows: np.ndarray, missing: np.ndarray | None, item_ids: np.ndarray,
               layout: RawLayout) -> dict[str, np.ndarray]:
        """Raw tensors of catalog ``rows``; rows flagged ``missing`` (items absent from the snapshot)
        get null features and their raw ``item_id``."""
        t = self.tensors
        out = {
            "item_int": t["item_int"][rows],
            "item_float": t["item_float"][rows],
            "item_str": t["item_str"][rows],
        }
        blocks, widths, start = [], [], 0
        full_widths = t["item_list_widths"]
        for k, lengths in enumerate(self.list_lengths):
            full = int(full_widths[k])
            width = int(lengths[rows].max()) if len(rows) else 0
            blocks.append(t["item_list"][rows, start:start + width])
            widths.append(width)
            start += full
        out["item_list"] = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.int64)
        out["item_list_widths"] = np.asarray(widths, dtype=np.int64)
        if missing is not None and missing.any():
            out["item_int"][missing] = INT_NULL
            out["item_float"][missing] = np.nan
            out["item_str"][missing] = 0
            out["item_list"][missing] = 0
            if "item_id" in layout.ints:
                out["item_int"][missing, layout.ints.index("item_id")] = item_ids[missing]
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
