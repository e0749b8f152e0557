"""The standard workflow for a dataset, driven by ``DatasetInfo`` column kinds.

| kind | ops |
|---|---|
| id (``user_id``, ``item_id``) | Categorify(min_frequency=ID_MIN_FREQUENCY, num_oov_buckets=ID_OOV_BUCKETS) |
| categorical | Categorify(min_frequency=CAT_MIN_FREQUENCY, num_oov_buckets=CAT_OOV_BUCKETS) |
| list_categorical | ListSlice(LIST_LENGTH) >> Categorify(...) |
| continuous | FillMissing(mean) >> Normalize(clip=CLIP) |
| timestamp | Age (days before the last train interaction) >> Clip(0) >> FillMissing(mean) >> LogOp >> Normalize(clip) -> ``<name>_age`` |
| flag | FillMissing(0) (0/1 continuous); ``available`` is a business rule, not a feature |
| text | ignored |

Derived user features: ``n_interactions`` LogOp >> Normalize(clip); ``recent_items`` ListSlice(50) >>
Categorify(vocab_from="item_id") (same index as ``item_id`` for the same raw id).
"""

from __future__ import annotations

from cascade.features.history import HISTORY_LENGTH
from cascade.preprocessing.graph import ColumnGroup
from cascade.preprocessing.ops import Age, Categorify, Clip, FillMissing, ListSlice, LogOp, Normalize
from cascade.preprocessing.schema import Entity, InputColumn, value_type_from_arrow
from cascade.preprocessing.workflow import Workflow
from cascade.workflows.dataset import ColumnInfo, DatasetInfo

ID_MIN_FREQUENCY = 2  # ids seen once in train share the OOV buckets, which thereby learn a cold-start embedding
ID_OOV_BUCKETS = 32
CAT_MIN_FREQUENCY = 3
CAT_OOV_BUCKETS = 4
LIST_LENGTH = 8
CLIP = 5.0
NOT_FEATURES = frozenset({"available"})


def _ops_for(column: ColumnInfo) -> tuple | None:
    kind = column.kind
    if column.name in NOT_FEATURES or kind == "text":
        return None
    if kind == "id":
        return (Categorify(min_frequency=ID_MIN_FREQUENCY, num_oov_buckets=ID_OOV_BUCKETS),)
    if kind == "categorical":
        return (Categorify(min_frequency=CAT_MIN_FREQUENCY, num_oov_buckets=CAT_OOV_BUCKETS),)
    if kind == "list_categorical":
        return (ListSlice(length=LIST_LENGTH),
                Categorify(min_frequency=CAT_MIN_FREQUENCY, num_oov_buckets=CAT_OOV_BUCKETS))
    if kind == "continuous":
        return (FillMissing(strategy="mean"), Normalize(clip=CLIP))
    if kind == "timestamp":
        return (Age(), Clip(lower=0.0), FillMissing(strategy="mean"), LogOp(), Normalize(clip=CLIP))
    if kind == "flag":
        return (FillMissing(value=0.0),)
    return None


def default_workflow(info: DatasetInfo, *, history_length: int = HISTORY_LENGTH) -> Workflow:
    """The standard user + item workflow for the dataset described by ``info``."""
    inputs: list[InputColumn] = []
    groups: list[ColumnGroup] = []
    pairs: list[tuple[Entity, list[ColumnInfo]]] = [("user", info.user_columns), ("item", info.item_columns)]
    for entity, columns in pairs:
        key = f"{entity}_id"
        declared = {c.name: c for c in columns}
        declared.setdefault(key, ColumnInfo(name=key, kind="id", dtype="int64"))
        ordered = [declared[key]] + [c for c in columns if c.name != key]
        for column in ordered:
            kind = "id" if column.name == key else column.kind
            ops = _ops_for(column.model_copy(update={"kind": kind}))
            if ops is None:
                continue
            dtype, is_list = value_type_from_arrow(column.dtype, column.name)
            inputs.append(InputColumn(name=column.name, entity=entity, dtype=dtype, is_list=is_list))
            groups.append(ColumnGroup((column.name,), ops))
        if entity == "user":
            inputs.append(InputColumn(name="recent_items", entity="user", dtype="int64", is_list=True))
            groups.append(ColumnGroup(("recent_items",), (ListSlice(length=history_length), Categorify(vocab_from="item_id"))))
            inputs.append(InputColumn(name="n_interactions", entity="user", dtype="int64"))
            groups.append(ColumnGroup(("n_interactions",), (LogOp(), Normalize(clip=CLIP))))
    return Workflow(groups, inputs)
