"""Read one entity's input columns from a dataset folder: attribute columns from users.parquet /
items.parquet, plus the derived per-user features (``n_interactions``, ``recent_items``,
``seen_items``) computed from the TRAIN interactions only."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from cascade.errors import SchemaError
from cascade.preprocessing.schema import Entity, InputColumn
from cascade.workflows.dataset import DatasetPaths

DERIVED_USER_COLUMNS = ("n_interactions", "recent_items", "seen_items")


def id_column(entity: Entity) -> str:
    return f"{entity}_id"


def read_entity_frame(
    paths: DatasetPaths,
    entity: Entity,
    columns: Iterable[InputColumn],
    *,
    user_counts: pd.Series | None = None,
) -> pd.DataFrame:
    """A frame with ``<entity>_id`` and ``columns``, in table order (catalog order for items).

    ``user_counts`` (train interactions per raw user id) supplies ``n_interactions`` without
    building the full history; list history columns are derived with
    :func:`cascade.features.history.load_user_history` when asked for.
    """
    import pyarrow.parquet as pq

    key = id_column(entity)
    table_path = paths.users if entity == "user" else paths.items
    columns = list(columns)
    derived = [c for c in columns if entity == "user" and c.name in DERIVED_USER_COLUMNS]
    stored = [c for c in columns if c not in derived and c.name != key]
    schema = pq.read_schema(table_path)
    for column in [InputColumn(name=key, entity=entity, dtype="int64")] + stored:
        if column.name not in schema.names:
            raise SchemaError(
                f"{table_path.name}: {entity} column {column.name!r} is missing; expected {column.describe()}"
            )
    frame = pq.read_table(table_path, columns=[key] + [c.name for c in stored]).to_pandas()
    if frame[key].dtype.kind not in "iu":
        raise SchemaError(f"{table_path.name}: column {key!r} has dtype {frame[key].dtype}; expected int64")
    ids = frame[key].to_numpy(np.int64)
    names = {c.name for c in derived}
    if names & {"recent_items", "seen_items"} or ("n_interactions" in names and user_counts is None):
        from cascade.features.history import load_user_history

        history = load_user_history(paths.train).set_index("user_id")
        for name in ("recent_items", "seen_items"):
            if name in names:  # users without train interactions get None (an empty list)
                frame[name] = history[name].reindex(ids).to_numpy()
        if user_counts is None:
            user_counts = history["n_interactions"]
    if "n_interactions" in names and user_counts is not None:
        frame["n_interactions"] = user_counts.reindex(ids, fill_value=0).to_numpy(np.int64)
    return frame
