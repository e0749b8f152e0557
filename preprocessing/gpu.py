"""The GPU engine: the train scan of :mod:`cascade.preprocessing.fit` on cudf (``engine="cudf"``).

cudf is imported only here and only when asked for (``pip install 'cascade-recsys[gpu]'``); the CPU
engine is the default and the tested one. Both produce the same :class:`InteractionCounts`, so the
fitted statistics do not depend on the engine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cascade.errors import UnavailableError


def cudf_available() -> bool:
    try:
        import cudf  # noqa: F401
    except Exception:  # ImportError, or a CUDA runtime error on machines without a GPU
        return False
    return True


def scan_interactions_cudf(train_path: Path, progress: bool):
    """Row group by row group: user/item value counts and the timestamp range on the GPU."""
    try:
        import cudf
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise UnavailableError(
            f"engine='cudf' needs cudf with a CUDA GPU (pip install 'cascade-recsys[gpu]'): {exc}"
        ) from None
    import pyarrow.parquet as pq
    from cascade.progress import progress_bar

    from cascade.preprocessing.fit import TRAIN_COLUMNS, InteractionCounts, _merge, check_train_schema

    total = check_train_schema(train_path)
    groups = pq.ParquetFile(train_path).num_row_groups
    users: list[pd.Series] = []
    items: list[pd.Series] = []
    t_min, t_max = None, None
    for group in progress_bar(range(groups), desc="fit: scan train (cudf)", unit="row group", enabled=progress):
        frame = cudf.read_parquet(str(train_path), columns=list(TRAIN_COLUMNS), row_groups=[group])
        if len(frame) == 0:
            continue
        users.append(frame["user_id"].value_counts().to_pandas())
        items.append(frame["item_id"].value_counts().to_pandas())
        lo, hi = int(frame["timestamp"].min()), int(frame["timestamp"].max())
        t_min = lo if t_min is None else min(t_min, lo)
        t_max = hi if t_max is None else max(t_max, hi)
    return InteractionCounts(_merge(users), _merge(items), total, t_min, t_max)
