"""Feature specs the torch models are built from: a light, torch-free mirror of the preprocessing
``ColumnSpec`` (name, entity, kind, dtype, cardinality, list_length), serialisable to JSON so the
artifact ``meta.json`` files can rebuild a model without the workflow."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal

from cascade.errors import SchemaError

Entity = Literal["user", "item"]
Kind = Literal["categorical", "continuous"]


@dataclass(frozen=True)
class FeatureSpec:
    """One workflow output column as a model input."""

    name: str
    entity: Entity
    kind: Kind
    dtype: str
    cardinality: int | None = None
    list_length: int | None = None

    @property
    def is_list(self) -> bool:
        return self.list_length is not None

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    @classmethod
    def from_column(cls, column: Any) -> "FeatureSpec":
        """Build from a preprocessing ``ColumnSpec`` (or any object/dict with the same fields)."""
        get = column.get if isinstance(column, dict) else (lambda k, d=None: getattr(column, k, d))
        spec = cls(
            name=str(get("name")),
            entity=str(get("entity")),  # type: ignore[arg-type]
            kind=str(get("kind")),  # type: ignore[arg-type]
            dtype=str(get("dtype", "int64" if get("kind") == "categorical" else "float32")),
            cardinality=None if get("cardinality") is None else int(get("cardinality")),
            list_length=None if get("list_length") is None else int(get("list_length")),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.entity not in ("user", "item"):
            raise SchemaError(f"column {self.name!r}: entity must be 'user' or 'item', got {self.entity!r}")
        if self.kind == "categorical":
            if not self.cardinality or self.cardinality < 1:
                raise SchemaError(f"categorical column {self.name!r} needs a positive cardinality, got {self.cardinality}")
        elif self.kind != "continuous":
            raise SchemaError(f"column {self.name!r}: kind must be 'categorical' or 'continuous', got {self.kind!r}")
        if self.list_length is not None and self.list_length < 1:
            raise SchemaError(f"list column {self.name!r} needs list_length >= 1, got {self.list_length}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "FeatureSpec":
        return cls.from_column(payload)


def specs_from_schema(columns: Iterable[Any]) -> list[FeatureSpec]:
    return [FeatureSpec.from_column(c) for c in columns]


def by_entity(specs: Iterable[FeatureSpec], entity: Entity) -> list[FeatureSpec]:
    return [s for s in specs if s.entity == entity]


def find(specs: Iterable[FeatureSpec], name: str) -> FeatureSpec | None:
    for spec in specs:
        if spec.name == name:
            return spec
    return None


def embedding_dim(cardinality: int, cap: int) -> int:
    """Rule-of-thumb embedding width (fastai's 1.6 * n^0.56), clamped to [4, cap]."""
    return int(min(cap, max(4, round(1.6 * cardinality**0.56))))


class ColumnTupleConfig:
    """Mixin for model configs (dataclasses) whose column-name tuples are stored as JSON lists."""

    TUPLE_FIELDS: tuple[str, ...] = ("history_columns", "ignore_columns")

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)  # type: ignore[call-overload]
        for name in self.TUPLE_FIELDS:
            payload[name] = list(payload[name])
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]):
        payload = dict(payload)
        for name in cls.TUPLE_FIELDS:
            payload[name] = tuple(payload.get(name, ()))
        return cls(**payload)
