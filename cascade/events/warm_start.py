"""Warm start across a vocabulary change: a model built for a refitted workflow (vocabularies grown
by new users and items) takes over a trained model's weights.

* An embedding table of a categorified feature is remapped row by row BY RAW VALUE: the row of
  value v in the new vocabulary gets the old row of v; the null row and the OOV hash-bucket rows
  (0..num_oov, same layout in both) are copied; rows of new values keep their fresh initialisation.
* Every other parameter or buffer whose shape is unchanged is copied.
* What cannot be carried (a table whose width changed because its cardinality crossed a width
  step of :func:`cascade.models.features.embedding_dim`, and the layers reading it) stays fresh
  and is listed in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class WarmStartReport:
    copied: list[str] = field(default_factory=list)
    remapped: dict[str, int] = field(default_factory=dict)  # parameter -> rows carried over
    fresh: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"copied": len(self.copied), "remapped": self.remapped, "fresh": self.fresh}


def row_map(old_vocab: np.ndarray, new_vocab: np.ndarray, num_oov: int) -> tuple[np.ndarray, np.ndarray]:
    """(new rows, old rows) to copy: null + OOV rows, then every raw value in both vocabularies."""
    base = 1 + int(num_oov)
    old_pos = {v: i for i, v in enumerate(old_vocab.tolist())}
    new_rows, old_rows = list(range(base)), list(range(base))
    for j, value in enumerate(new_vocab.tolist()):
        i = old_pos.get(value)
        if i is not None:
            new_rows.append(base + j)
            old_rows.append(base + i)
    return np.asarray(new_rows, np.int64), np.asarray(old_rows, np.int64)


def _feature_of(module_path: str, item_id_column: str) -> str:
    last = module_path.rsplit(".", 1)[-1]
    return item_id_column if last == "item_embedding" else last


def warm_start(model: Any, old_state: dict, old_workflow: Any, new_workflow: Any,
               skip_prefixes: tuple[str, ...] = (), item_id_column: str = "item_id") -> WarmStartReport:
    """Load ``old_state`` into ``model`` (built on ``new_workflow``'s specs) as described above."""
    import torch
    from torch import nn

    report = WarmStartReport()
    new_state = model.state_dict()
    tables: dict[str, str] = {}  # state key -> feature name
    for path, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.Embedding):
            tables[f"{path}.weight"] = _feature_of(path, item_id_column)
    maps: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def mapping(feature: str):
        if feature not in maps:
            try:
                old_vocab, new_vocab = old_workflow.vocabulary(feature), new_workflow.vocabulary(feature)
                num_oov = int(new_workflow.categorify(feature).num_oov_buckets)
                maps[feature] = row_map(old_vocab, new_vocab, num_oov)
            except Exception:  # noqa: BLE001 - not a categorified output: copy by shape only
                maps[feature] = None
        return maps[feature]

    with torch.no_grad():
        for key, target in new_state.items():
            if key.startswith(skip_prefixes):
                continue
            source = old_state.get(key)
            if source is None:
                report.fresh.append(key)
                continue
            if key in tables and source.ndim == 2 and target.ndim == 2 and source.shape[1] == target.shape[1]:
                rows = mapping(tables[key])
                if rows is not None:
                    new_rows, old_rows = rows
                    keep = (new_rows < target.shape[0]) & (old_rows < source.shape[0])
                    target[torch.from_numpy(new_rows[keep])] = source[torch.from_numpy(old_rows[keep])].to(device=target.device, dtype=target.dtype)
                    report.remapped[key] = int(keep.sum())
                    continue
            if tuple(source.shape) == tuple(target.shape):
                target.copy_(source)
                report.copied.append(key)
            else:
                report.fresh.append(key)
    model.load_state_dict(new_state)
    return report
