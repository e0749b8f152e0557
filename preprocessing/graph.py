"""The declarative graph: column selectors chained with ops (``["a", "b"] >> Categorify()``), expanded
into one typed :class:`Pipeline` per input column. Types, names, kinds and list lengths are checked
and known when the graph is built, before any data flows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from cascade.errors import SchemaError
from cascade.preprocessing.ops import Categorify, FitContext, ListSlice, Op
from cascade.preprocessing.schema import ColumnSpec, InputColumn, Kind
from cascade.preprocessing.values import Values


@dataclass(frozen=True)
class ColumnGroup:
    """Selected input columns and the ops applied to each of them (independently)."""

    columns: tuple[str, ...]
    ops: tuple[Op, ...] = ()

    @classmethod
    def of(cls, columns: Any) -> "ColumnGroup":
        if isinstance(columns, ColumnGroup):
            return columns
        if isinstance(columns, str):
            return cls((columns,))
        names = tuple(columns)
        if not names or not all(isinstance(n, str) for n in names):
            raise SchemaError(f"a column selector is a non-empty list of column names, got {columns!r}")
        return cls(names)

    def __rshift__(self, op: Op) -> "ColumnGroup":
        if not isinstance(op, Op):
            raise SchemaError(f"only ops can follow >>, got {op!r}")
        return ColumnGroup(self.columns, self.ops + (op,))


def ColumnSelector(columns: Iterable[str] | str) -> ColumnGroup:  # noqa: N802 (NVTabular's name)
    return ColumnGroup.of(columns)


@dataclass
class Pipeline:
    """One input column through its own copies of the ops, to one output column."""

    input: InputColumn
    ops: list[Op]
    name: str = field(init=False)
    kind: Kind = field(init=False)
    list_length: int | None = field(init=False)

    def __post_init__(self) -> None:
        value_type = "float64" if self.input.dtype == "bool" else self.input.dtype
        name, list_length = self.input.name, None
        for op in self.ops:
            value_type = op.output_type(value_type, self.input.name)
            name = op.rename(name)
            if isinstance(op, ListSlice):
                if not self.input.is_list:
                    raise SchemaError(f"column {self.input.name!r}: ListSlice needs a list column")
                list_length = op.length
        if self.input.is_list and list_length is None:
            raise SchemaError(
                f"list column {self.input.name!r} needs a ListSlice(length) op (outputs are fixed-length [B, L])"
            )
        if value_type == "string":
            raise SchemaError(
                f"column {self.input.name!r}: string values must be encoded (Categorify or HashBucket) "
                "to become a model input"
            )
        self.name = name
        self.kind = "categorical" if value_type == "code" else "continuous"
        self.list_length = list_length

    @property
    def entity(self):
        return self.input.entity

    def categorify(self) -> Categorify | None:
        for op in self.ops:
            if isinstance(op, Categorify):
                return op
        return None

    @property
    def fitted(self) -> bool:
        return all(op.fitted for op in self.ops)

    def cardinality(self) -> int | None:
        if self.kind != "categorical":
            return None
        for op in reversed(self.ops):
            if not isinstance(op, ListSlice):
                return op.cardinality()
        return None

    def spec(self) -> ColumnSpec:
        return ColumnSpec(
            name=self.name,
            entity=self.input.entity,
            kind=self.kind,
            dtype="int64" if self.kind == "categorical" else "float32",
            cardinality=self.cardinality(),
            list_length=self.list_length,
        )

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        """Fit the ops in order, each on the output of the (already fitted) ops before it."""
        for i, op in enumerate(self.ops):
            op.fit(values, weights, ctx)
            if i + 1 < len(self.ops) and any(o.stateful for o in self.ops[i + 1:]):
                values = op.transform(values)

    def transform(self, values: Values) -> np.ndarray:
        for op in self.ops:
            values = op.transform(values)
        return materialize(values, self.kind, self.list_length)


def materialize(values: Values, kind: Kind, list_length: int | None) -> np.ndarray:
    """Final arrays: categorical int64 [B] or [B, L] (0-padded), continuous float32 (NaN -> 0)."""
    if kind == "categorical":
        data = values.data.astype(np.int64, copy=False)
    else:
        data = values.data.astype(np.float32)
        data[np.isnan(data)] = 0.0
    if list_length is None:
        return data
    n_rows = values.n_rows
    out = np.zeros((n_rows, list_length), dtype=data.dtype)
    if len(data):
        lengths = np.diff(values.offsets)
        rows = np.repeat(np.arange(n_rows), lengths)
        pos = np.arange(len(data)) - np.repeat(values.offsets[:-1], lengths)
        out[rows, pos] = data
    return out
