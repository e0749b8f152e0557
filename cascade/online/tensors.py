"""Encoded-feature tensors between the Triton models.

Model configs (``config.pbtxt``) are static while the feature columns depend on the dataset, so
encoded features travel packed into three typed tensors whose column order is the fitted
workflow's output schema (every model loads the workflow): ``*_cat`` INT64 [B, C], ``*_cont`` FP32
[B, F], ``*_lists`` INT64 [B, sum(L)]. The user's encodings travel ``candidates`` -> ``ranking``;
the items' encodings never cross a model boundary: the item side is encoded once per snapshot and
gathered inside ``ranking`` (:mod:`cascade.online.catalog`). Vectorised; no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


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
