"""Column ops with NVTabular's names and semantics, on numpy/pandas.

Each op is a typed pydantic model (its configuration, saved as JSON) plus fitted state in private
attributes (saved as JSON scalars + arrays by :mod:`cascade.preprocessing.artifact`). Ops work on
canonical :class:`~cascade.preprocessing.values.Values`; the element types flowing through a
pipeline are ``int64``, ``float64``, ``string`` (raw values) and ``code`` (categorical indices).

Categorical index layout (Categorify): 0 = null/padding, 1..num_oov_buckets = out-of-vocabulary
hash buckets, num_oov_buckets + 1 + p = the p-th vocabulary entry (by descending train frequency,
ties by ascending value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from cascade.errors import SchemaError
from cascade.preprocessing.values import Values

NUMERIC = ("int64", "float64")
RAW = ("int64", "float64", "string")


@dataclass(frozen=True)
class FitContext:
    """Facts about the training interactions that ops may fit on."""

    train_rows: int
    timestamp_min: int | None
    timestamp_max: int | None


def hash_values(data: np.ndarray) -> np.ndarray:
    """Deterministic uint64 hash of canonical values (pandas' SipHash with its fixed key)."""
    return pd.util.hash_array(data, categorize=False)


def as_float(values: Values) -> np.ndarray:
    """float64 data with NaN for nulls."""
    if values.data.dtype.kind == "f":
        return values.data
    out = values.data.astype(np.float64)
    if values.null is not None:
        out[values.null] = np.nan
    return out


def weighted_mean_std(x: np.ndarray, weights: np.ndarray) -> tuple[float, float, int]:
    ok = ~np.isnan(x) & (weights > 0)
    total = float(weights[ok].sum())
    if total <= 0:
        return 0.0, 1.0, 0
    mean = float(np.dot(x[ok], weights[ok]) / total)
    var = float(np.dot((x[ok] - mean) ** 2, weights[ok]) / total)
    std = float(np.sqrt(var))
    return mean, (std if std > 0 else 1.0), int(ok.sum())


class Op(BaseModel):
    """Base class: configuration fields + fitted private state."""

    model_config = ConfigDict(extra="forbid")

    accepts: ClassVar[tuple[str, ...]] = RAW
    stateful: ClassVar[bool] = False

    def __rrshift__(self, columns: Any):  # ["a", "b"] >> Op()
        from cascade.preprocessing.graph import ColumnGroup

        return ColumnGroup.of(columns) >> self

    def output_type(self, value_type: str, column: str) -> str:
        """The element type this op outputs for ``value_type`` input (SchemaError if not accepted)."""
        if value_type not in self.accepts:
            raise SchemaError(
                f"column {column!r}: {type(self).__name__} accepts {'/'.join(self.accepts)} values, "
                f"got {value_type}"
            )
        return self._out(value_type)

    def _out(self, value_type: str) -> str:
        return "float64"

    def rename(self, name: str) -> str:
        return name

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        """Fit state from all (weighted) values of the column; stateless ops do nothing."""

    def transform(self, values: Values) -> Values:
        raise NotImplementedError

    def cardinality(self) -> int | None:
        return None

    @property
    def fitted(self) -> bool:
        return True

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore state saved by :meth:`get_state`."""


def _codes(values: Values, codes: np.ndarray) -> Values:
    return Values(codes, None, values.offsets, values.n_rows)


def _floats(values: Values, data: np.ndarray) -> Values:
    return Values(data, None, values.offsets, values.n_rows)


class Categorify(Op):
    """Vocabulary by weighted train frequency; rare and unseen values go to OOV hash buckets.

    ``vocab_from`` shares another column's fitted Categorify (same index for the same raw value,
    e.g. ``recent_items`` uses ``item_id``'s vocabulary); its own fit is then a no-op.
    """

    op: Literal["Categorify"] = "Categorify"
    min_frequency: float = Field(1, ge=0, description="minimum weighted train count to get an own index")
    num_oov_buckets: int = Field(1, ge=0, description="hash buckets for rare/unseen values (0: map them to null)")
    max_size: int | None = Field(None, ge=1, description="keep at most this many most frequent values")
    vocab_from: str | None = Field(None, description="input column whose Categorify vocabulary to share")

    accepts: ClassVar[tuple[str, ...]] = RAW
    stateful: ClassVar[bool] = True

    _lookup: "_VocabLookup | None" = PrivateAttr(None)
    _source: "Categorify | None" = PrivateAttr(None)

    def _out(self, value_type: str) -> str:
        return "code"

    def link(self, source: "Categorify") -> None:
        self._source = source

    @property
    def owner(self) -> "Categorify":
        source = self._source
        return self if source is None else source

    @property
    def fitted(self) -> bool:
        return self.owner._lookup is not None

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        if self.vocab_from is not None:
            return
        keep = ~values.null_mask()
        w = values.row_weights(weights)[keep]
        data = values.data[keep]
        counts = pd.Series(w, dtype=np.float64).groupby(data).sum()
        counts = counts[(counts > 0) & (counts >= self.min_frequency)]
        table = pd.DataFrame({"value": counts.index.to_numpy(), "count": counts.to_numpy()})
        table = table.sort_values(["count", "value"], ascending=[False, True], kind="mergesort")
        if self.max_size is not None:
            table = table.iloc[: self.max_size]
        vocab = table["value"].to_numpy()
        vocab = vocab.astype(values.data.dtype) if values.data.dtype.kind in "if" else vocab.astype(object)
        self._lookup = _VocabLookup(vocab, table["count"].to_numpy(np.float64), self.num_oov_buckets)

    def transform(self, values: Values) -> Values:
        lookup = self.owner._lookup
        if lookup is None:
            raise SchemaError("Categorify is not fitted")
        return _codes(values, lookup.encode(values))

    def cardinality(self) -> int | None:
        lookup = self.owner._lookup
        return None if lookup is None else 1 + lookup.num_oov + len(lookup.vocab)

    def vocabulary(self) -> np.ndarray:
        """Raw values in index order: value i has index ``1 + num_oov_buckets + i``."""
        lookup = self.owner._lookup
        if lookup is None:
            raise SchemaError("Categorify is not fitted")
        return lookup.vocab

    def counts(self) -> np.ndarray:
        """Weighted train counts of :meth:`vocabulary` (e.g. item popularity)."""
        lookup = self.owner._lookup
        if lookup is None:
            raise SchemaError("Categorify is not fitted")
        return lookup.counts

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        lookup = self._lookup
        if self.vocab_from is not None or lookup is None:
            return {}, {}
        arrays = {"vocab": lookup.vocab, "counts": lookup.counts}
        if lookup.order is not None:
            arrays["order"] = lookup.order
        return {"size": int(len(lookup.vocab))}, arrays

    def set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if "vocab" in arrays:
            self._lookup = _VocabLookup(arrays["vocab"], arrays["counts"], self.num_oov_buckets, arrays.get("order"))


class _VocabLookup:
    """Fitted vocabulary + structures for vectorised lookup (a plain object: cheap attribute access)."""

    __slots__ = ("vocab", "counts", "num_oov", "base", "order", "sorted_values", "sorted_codes", "engine")
    order: Any
    sorted_values: Any
    sorted_codes: Any
    engine: Any

    def __init__(self, vocab: np.ndarray, counts: np.ndarray, num_oov: int, order: np.ndarray | None = None) -> None:
        self.vocab, self.counts, self.num_oov = vocab, counts, num_oov
        self.base = 1 + num_oov
        self.order = self.sorted_values = self.sorted_codes = self.engine = None
        if vocab.dtype == object:
            index = pd.Index(vocab, dtype=object)
            # The index's hash table: its get_indexer skips the per-call Index construction of
            # Index.get_indexer (~2x faster on small batches); fall back to the public method.
            engine = getattr(index, "_engine", None)
            self.engine = engine if hasattr(engine, "get_indexer") else index
            self.engine.get_indexer(vocab[:1])  # build the hash table now, not on the first request
        else:
            self.order = np.argsort(vocab, kind="stable").astype(np.int64) if order is None else order
            self.sorted_values = vocab[self.order]
            self.sorted_codes = self.order + self.base

    def encode(self, values: Values) -> np.ndarray:
        """int64 indices: nulls -> 0, rare/unseen -> 1 + hash % num_oov (0 without buckets), else base + position."""
        data = values.data
        if self.engine is not None:
            pos = self.engine.get_indexer(data)
            codes = pos + self.base
            miss = pos < 0
        elif len(self.sorted_values):
            pos = np.searchsorted(self.sorted_values, data)
            np.minimum(pos, len(self.sorted_values) - 1, out=pos)
            codes = self.sorted_codes[pos]
            miss = self.sorted_values[pos] != data
        else:
            codes = np.zeros(len(data), dtype=np.int64)
            miss = np.ones(len(data), dtype=bool)
        if values.null is not None or data.dtype.kind == "f":
            null = values.null_mask()
            codes[null] = 0
            miss &= ~null
        if miss.any():  # only misses are hashed; object nulls (None/NaN) are found among them
            where = np.flatnonzero(miss)
            missed = data[where]
            if data.dtype == object:
                is_null = pd.isna(missed)
                codes[where[is_null]] = 0
                where, missed = where[~is_null], missed[~is_null]
            if self.num_oov:
                codes[where] = 1 + (hash_values(missed) % np.uint64(self.num_oov)).astype(np.int64)
            else:
                codes[where] = 0
        return codes


class HashBucket(Op):
    """index = 1 + hash(value) % num_buckets; null -> 0."""

    op: Literal["HashBucket"] = "HashBucket"
    num_buckets: int = Field(ge=1)

    def _out(self, value_type: str) -> str:
        return "code"

    def transform(self, values: Values) -> Values:
        codes = 1 + (hash_values(values.data) % np.uint64(self.num_buckets)).astype(np.int64)
        codes[values.null_mask()] = 0
        return _codes(values, codes)

    def cardinality(self) -> int | None:
        return self.num_buckets + 1


class Bucketize(Op):
    """index = 1 + number of boundaries <= value; null -> 0 (cardinality len(boundaries) + 2)."""

    op: Literal["Bucketize"] = "Bucketize"
    boundaries: list[float] = Field(min_length=1)
    accepts: ClassVar[tuple[str, ...]] = NUMERIC

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("boundaries must be strictly increasing")
        return value

    def _out(self, value_type: str) -> str:
        return "code"

    def transform(self, values: Values) -> Values:
        x = as_float(values)
        codes = np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), x, side="right").astype(np.int64) + 1
        codes[np.isnan(x)] = 0
        return _codes(values, codes)

    def cardinality(self) -> int | None:
        return len(self.boundaries) + 2


class FillMissing(Op):
    """Replace nulls with a constant or the (weighted) train mean."""

    op: Literal["FillMissing"] = "FillMissing"
    strategy: Literal["constant", "mean"] = "constant"
    value: float = 0.0
    accepts: ClassVar[tuple[str, ...]] = NUMERIC
    stateful: ClassVar[bool] = True
    _fill: float | None = PrivateAttr(None)

    @property
    def fitted(self) -> bool:
        return self.strategy == "constant" or self._fill is not None

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        if self.strategy == "mean":
            self._fill = weighted_mean_std(as_float(values), values.row_weights(weights))[0]

    def transform(self, values: Values) -> Values:
        x = as_float(values)
        fill = self.value if self.strategy == "constant" else self._fill
        return _floats(values, np.where(np.isnan(x), np.nan if fill is None else fill, x))

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"fill": self._fill} if self.strategy == "mean" else {}), {}

    def set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._fill = scalars.get("fill")


class Clip(Op):
    """Clip values into [lower, upper] (either bound optional); nulls stay null."""

    op: Literal["Clip"] = "Clip"
    lower: float | None = None
    upper: float | None = None
    accepts: ClassVar[tuple[str, ...]] = NUMERIC

    def transform(self, values: Values) -> Values:
        x = as_float(values).copy()
        if self.lower is not None:
            np.maximum(x, self.lower, out=x)
        if self.upper is not None:
            np.minimum(x, self.upper, out=x)
        return _floats(values, x)


class LogOp(Op):
    """log(1 + max(x, 0)); nulls stay null."""

    op: Literal["LogOp"] = "LogOp"
    accepts: ClassVar[tuple[str, ...]] = NUMERIC

    def transform(self, values: Values) -> Values:
        return _floats(values, np.log1p(np.maximum(as_float(values), 0.0)))


class Normalize(Op):
    """(x - mean) / std with weighted train statistics; nulls -> 0 (the mean); optional clip to +-clip."""

    op: Literal["Normalize"] = "Normalize"
    clip: float | None = Field(None, gt=0)
    accepts: ClassVar[tuple[str, ...]] = NUMERIC
    stateful: ClassVar[bool] = True
    _stats: dict[str, float] | None = PrivateAttr(None)

    @property
    def fitted(self) -> bool:
        return self._stats is not None

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        x = as_float(values)
        mean, std, count = weighted_mean_std(x, values.row_weights(weights))
        finite = x[~np.isnan(x)]
        self._stats = {
            "mean": mean, "std": std, "count": count,
            "min": float(finite.min()) if len(finite) else 0.0,
            "max": float(finite.max()) if len(finite) else 0.0,
        }

    def transform(self, values: Values) -> Values:
        stats = self._stats
        if stats is None:
            raise SchemaError("Normalize is not fitted")
        z = (as_float(values) - stats["mean"]) / stats["std"]
        z[np.isnan(z)] = 0.0
        clip = self.clip
        if clip is not None:  # minimum/maximum: np.clip has a large per-call overhead in numpy 1.x
            np.minimum(z, clip, out=z)
            np.maximum(z, -clip, out=z)
        return _floats(values, z)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return dict(self._stats or {}), {}

    def set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._stats = dict(scalars) if scalars else None


class Age(Op):
    """Column arithmetic: (fitted reference time - value) / unit_seconds; the reference is the last
    train interaction timestamp. Output column ``<name>_age``."""

    op: Literal["Age"] = "Age"
    unit_seconds: float = Field(86400.0, gt=0)
    accepts: ClassVar[tuple[str, ...]] = NUMERIC
    stateful: ClassVar[bool] = True
    _reference: float | None = PrivateAttr(None)

    @property
    def fitted(self) -> bool:
        return self._reference is not None

    def rename(self, name: str) -> str:
        return f"{name}_age"

    def fit(self, values: Values, weights: np.ndarray, ctx: FitContext) -> None:
        if ctx.timestamp_max is None:
            x = as_float(values)
            self._reference = float(np.nanmax(x)) if np.isfinite(x).any() else 0.0
        else:
            self._reference = float(ctx.timestamp_max)

    def transform(self, values: Values) -> Values:
        return _floats(values, (self._reference - as_float(values)) / self.unit_seconds)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"reference": self._reference}, {}

    def set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._reference = scalars.get("reference")


class ListSlice(Op):
    """Keep the first ``length`` elements of each list; the output is padded to [B, length] with 0."""

    op: Literal["ListSlice"] = "ListSlice"
    length: int = Field(ge=1)
    accepts: ClassVar[tuple[str, ...]] = ("int64", "float64", "string", "code")

    def _out(self, value_type: str) -> str:
        return value_type

    def transform(self, values: Values) -> Values:
        if values.offsets is None:
            raise SchemaError("ListSlice needs a list column")
        lengths = np.diff(values.offsets)
        if len(lengths) == 0 or lengths.max() <= self.length:
            return values
        pos = np.arange(len(values.data)) - np.repeat(values.offsets[:-1], lengths)
        keep = pos < self.length
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.minimum(lengths, self.length), out=offsets[1:])
        null = None if values.null is None else values.null[keep]
        return Values(values.data[keep], null, offsets, values.n_rows)


OP_TYPES: dict[str, type[Op]] = {
    cls.model_fields["op"].default: cls
    for cls in (Categorify, HashBucket, Bucketize, FillMissing, Clip, LogOp, Normalize, Age, ListSlice)
}


def op_from_config(config: dict[str, Any]) -> Op:
    name = config.get("op")
    if name not in OP_TYPES:
        raise SchemaError(f"unknown op {name!r}; expected one of {sorted(OP_TYPES)}")
    return OP_TYPES[name].model_validate(config)
