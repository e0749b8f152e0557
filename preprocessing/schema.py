"""Typed column descriptions: what a workflow reads (:class:`InputColumn`) and what it writes
(:class:`ColumnSpec`, the contract in docs/DESIGN.md that models size their embedding tables from)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from cascade.errors import SchemaError

Entity = Literal["user", "item"]
ENTITIES: tuple[Entity, ...] = ("user", "item")
Kind = Literal["categorical", "continuous"]
# Canonical element types of input columns ("bool" is read as 0/1 and handled as float64).
ValueType = Literal["int64", "float64", "string", "bool"]


class InputColumn(BaseModel):
    """One raw input column of an entity: scalar or list of ``dtype`` elements."""

    model_config = ConfigDict(frozen=True)

    name: str
    entity: Entity
    dtype: ValueType
    is_list: bool = False

    def describe(self) -> str:
        """The accepted form, for error messages."""
        if self.is_list:
            pad = {"int64": "-1", "float64": "NaN", "string": "None", "bool": "None"}[self.dtype]
            return (
                f"list of {self.dtype} (1-D object array of sequences, or a 2-D {self.dtype} array "
                f"padded with {pad})"
            )
        return f"{self.dtype} (1-D array of length B; nulls as NaN/None)"


class ColumnSpec(BaseModel):
    """One workflow output column."""

    model_config = ConfigDict(frozen=True)

    name: str
    entity: Entity
    kind: Kind
    dtype: Literal["int64", "float32"]
    cardinality: int | None = None
    list_length: int | None = None


def value_type_from_arrow(type_string: str, column: str) -> tuple[ValueType, bool]:
    """Map an Arrow type string from ``DatasetInfo`` (``int64``, ``string``, ``list<item: string>``,
    ``double``, ``bool``, ``timestamp[s]``) to (element value type, is_list)."""
    text = type_string.strip().lower()
    is_list = False
    for prefix in ("large_list<", "list<"):
        if text.startswith(prefix):
            is_list = True
            text = text[len(prefix):].rstrip(">")
            text = text.split(":", 1)[-1].strip() if ":" in text else text
            break
    if text.startswith(("int", "uint", "timestamp")):
        return "int64", is_list
    if text in ("float", "double", "halffloat", "float16", "float32", "float64") or text.startswith("decimal"):
        return "float64", is_list
    if text in ("string", "large_string", "utf8", "large_utf8", "str", "object"):
        return "string", is_list
    if text in ("bool", "boolean"):
        return "bool", is_list
    raise SchemaError(f"column {column!r}: unsupported dtype {type_string!r} (expected an int, float, string, bool or list type)")
